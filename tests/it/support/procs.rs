//! Looks at processes through /proc: what a server spawned, and whether it still lives.

use std::fs;

/// State letter and parent pid from `/proc/PID/stat`, or None when the pid is gone.
fn state_and_parent(pid: u32) -> Option<(char, u32)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;

    // The command name sits in parentheses and may hold spaces or parentheses itself.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let parent = fields.next()?.parse().ok()?;
    Some((state, parent))
}

/// Every process whose parent, grandparent, ... is `pid`.
pub fn descendants_of(pid: u32) -> Vec<u32> {
    let mut all = Vec::new();
    let Ok(entries) = fs::read_dir("/proc") else {
        return all;
    };
    let table: Vec<(u32, u32)> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|p| Some((p, state_and_parent(p)?.1)))
        .collect();

    let mut frontier = vec![pid];
    while let Some(parent) = frontier.pop() {
        for &(child, _) in table.iter().filter(|(_, pp)| *pp == parent) {
            all.push(child);
            frontier.push(child);
        }
    }
    all
}

/// The direct children of `pid` that have exited and wait to be reaped (state Z).
pub fn zombie_children_of(pid: u32) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&p| state_and_parent(p) == Some(('Z', pid)))
        .collect()
}

/// True while the process exists and is not a zombie (a zombie runs no code; reaping it
/// is its new parent's business once the server is gone).
pub fn is_alive(pid: u32) -> bool {
    state_and_parent(pid).is_some_and(|(state, _)| state != 'Z')
}

/// The command line, for messages.
pub fn cmdline(pid: u32) -> String {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    String::from_utf8_lossy(&raw)
        .replace('\0', " ")
        .trim()
        .to_string()
}

/// Resident memory of `pid` in KiB (VmRSS), 0 once it is gone.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let line = status.lines().find(|l| l.starts_with("VmRSS:"));
    line.and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}
