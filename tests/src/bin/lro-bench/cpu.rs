//! CPU time of processes, from `/proc` (Linux only, as the bench is): per process, so that a
//! table can say where each microsecond of a job goes. Read-only: the shared Redis and RabbitMQ
//! are found by the port they listen on and only their `/proc/PID/stat` is read.

use anyhow::Context;

/// Nanoseconds per clock tick of `/proc/PID/stat` (USER_HZ is 100 on Linux).
const NS_PER_TICK: f64 = 1e7;

/// User + system CPU time of process `pid` so far, in ns (10 ms resolution).
pub(crate) fn ns(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("cannot read /proc/{pid}/stat"))?;
    let after = stat.rsplit_once(')').context("no comm")?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After the comm: state is field 3, utime 14, stime 15.
    let mut ticks = 0u64;
    for i in [11, 12] {
        ticks += fields.get(i).context("short stat")?.parse::<u64>()?;
    }
    Ok(ticks as f64 * NS_PER_TICK)
}

/// The process listening on TCP `port` (IPv4 or IPv6), by the socket's inode in
/// `/proc/net/tcp*` and the process's open descriptors; `None` when there is none or its
/// descriptors cannot be read. Unlike `pidof`, this tells the shared service from private
/// instances other tests start on other ports.
pub(crate) fn listener(port: u16) -> Option<u32> {
    let suffix = format!(":{port:04X}");
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // local_address is field 1, st field 3 (0A = LISTEN), inode field 9.
            if f.len() > 9 && f[1].ends_with(&suffix) && f[3] == "0A" {
                inodes.push(format!("socket:[{}]", f[9]));
            }
        }
    }
    if inodes.is_empty() {
        return None;
    }
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(link) = std::fs::read_link(fd.path())
                && inodes.iter().any(|i| link.as_os_str() == i.as_str())
            {
                return Some(pid);
            }
        }
    }
    None
}
