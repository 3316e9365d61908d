//! Where built bundles live: `data/bundles/{function_id}/{version}/bundle.js`.

use std::path::{Path, PathBuf};

/// The directory holding one version's build output.
pub fn version_dir(data_dir: &Path, function_id: i64, version: i64) -> PathBuf {
    data_dir
        .join("bundles")
        .join(function_id.to_string())
        .join(version.to_string())
}

/// The bundle file of one version.
pub fn bundle_path(data_dir: &Path, function_id: i64, version: i64) -> PathBuf {
    version_dir(data_dir, function_id, version).join("bundle.js")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_the_design() {
        let path = bundle_path(Path::new("/d"), 3, 7);
        assert_eq!(path, PathBuf::from("/d/bundles/3/7/bundle.js"));
    }
}
