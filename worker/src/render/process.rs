//! The browser's processes as the system sees them: started so that they die with the
//! worker, walked in `/proc` for their memory, and killed together.

use std::path::PathBuf;

/// The program to start Chromium with: a script in `dir` that starts it under `setpriv
/// --pdeathsig KILL`, so that a worker killed outright (SIGKILL, a crash) takes its browser
/// with it, where an orderly stop closes it anyway; Chromium itself when `setpriv`
/// (util-linux) is missing.
pub fn dying_with_the_worker(
    chromium: &std::path::Path,
    dir: &std::path::Path,
) -> std::io::Result<PathBuf> {
    let setpriv = std::path::Path::new("/usr/bin/setpriv");
    if !setpriv.is_file() {
        return Ok(chromium.to_path_buf());
    }
    use std::os::unix::fs::PermissionsExt;
    let script = dir.join("chromium.sh");
    let quoted = chromium.display().to_string().replace('\'', "'\\''");
    std::fs::write(
        &script,
        format!("#!/bin/sh\nexec /usr/bin/setpriv --pdeathsig KILL -- '{quoted}' \"$@\"\n"),
    )?;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o700))?;
    Ok(script)
}

/// Whether this process runs as root (Chromium's sandbox needs a user of its own).
pub fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().next().map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// The pids of `pid` and its descendants, from `/proc`.
pub fn process_tree(pid: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(child) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let parent = std::fs::read_to_string(format!("/proc/{child}/stat"))
                .ok()
                .and_then(|stat| {
                    // The command name may hold spaces: the fields start after its ')'.
                    let after = stat.rsplit_once(')')?.1;
                    after.split_whitespace().nth(1)?.parse::<u32>().ok()
                });
            if let Some(parent) = parent {
                parents.push((child, parent));
            }
        }
    }
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        let p = out[i];
        out.extend(parents.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
        i += 1;
    }
    out
}

/// Memory of `pid` and its descendants, MiB: the sum of their anonymous and shared-memory
/// resident pages. The libraries every Chromium process maps count not at all, where a sum
/// of resident sizes would count them once per process; and unlike a proportional set size,
/// it is readable for the sandboxed renderers of a browser run as an ordinary user.
pub fn tree_memory_mb(pid: u32) -> u64 {
    let kib: u64 = process_tree(pid)
        .into_iter()
        .filter_map(|p| {
            let status = std::fs::read_to_string(format!("/proc/{p}/status")).ok()?;
            let field = |name: &str| -> Option<u64> {
                let line = status.lines().find(|l| l.starts_with(name))?;
                line.split_whitespace().nth(1)?.parse::<u64>().ok()
            };
            // Kernels before 4.5 give the resident size alone.
            match field("RssAnon:") {
                Some(anon) => Some(anon + field("RssShmem:").unwrap_or(0)),
                None => field("VmRSS:"),
            }
        })
        .sum();
    kib / 1024
}

/// Kills `pid` and its descendants (a pid reused meanwhile is the risk every supervisor
/// takes, narrowed by killing right as the browser is let go).
pub fn kill_tree(pid: u32) {
    let pids: Vec<String> = process_tree(pid)
        .into_iter()
        .map(|p| p.to_string())
        .collect();
    let _ = std::process::Command::new("kill")
        .arg("-9")
        .args(pids)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
}
