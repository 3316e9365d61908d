//! The order of log levels, for filtering: each stream a function writes to has a rank.
//!
//! trace < debug < info (also `log`, `stdout` and any other console method) < warn (also
//! `stderr` and the store's own `notice` lines) < error. A filter keeps lines at or above
//! a minimum rank.

pub const TRACE: u8 = 0;
pub const DEBUG: u8 = 1;
pub const INFO: u8 = 2;
pub const WARN: u8 = 3;
pub const ERROR: u8 = 4;

/// The stream of the lines the store writes itself: dropped and truncated output.
pub const NOTICE: &str = "notice";

/// The rank of a stream name; streams this table does not know rank as info.
pub fn rank(stream: &str) -> u8 {
    match stream {
        "trace" => TRACE,
        "debug" => DEBUG,
        "warn" | "stderr" | NOTICE => WARN,
        "error" => ERROR,
        _ => INFO,
    }
}

/// The level name of a rank, as GET_LOGS reports it next to the stream.
pub fn name(rank: u8) -> &'static str {
    match rank {
        TRACE => "trace",
        DEBUG => "debug",
        INFO => "info",
        WARN => "warn",
        _ => "error",
    }
}

/// The minimum rank a filter names, or None for a name that is not a level.
pub fn parse(name: &str) -> Option<u8> {
    match name.to_ascii_lowercase().as_str() {
        "trace" => Some(TRACE),
        "debug" => Some(DEBUG),
        "info" | "log" | "stdout" => Some(INFO),
        "warn" | "warning" | "stderr" => Some(WARN),
        "error" => Some(ERROR),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_are_ordered_and_streams_fall_in_place() {
        let order = ["trace", "debug", "log", "warn", "error"].map(rank);
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}");
        assert_eq!(rank("info"), rank("log"));
        assert_eq!(rank("stdout"), INFO);
        assert_eq!(rank("table"), INFO);
        assert_eq!(rank("stderr"), WARN);
        assert_eq!(rank(NOTICE), WARN);
        assert_eq!(name(rank("stderr")), "warn");
    }

    #[test]
    fn filters_parse_level_and_stream_names() {
        assert_eq!(parse("WARN"), Some(WARN));
        assert_eq!(parse("stderr"), Some(WARN));
        assert_eq!(parse("info"), Some(INFO));
        assert_eq!(parse("loud"), None);
    }
}
