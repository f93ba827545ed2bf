//! The process's fd limit, a process's (or process tree's) resident memory,
//! CPU time and open descriptors, and pinning to CPUs.

use std::io;

/// Raises this process's soft `RLIMIT_NOFILE` to `want`, or as far as the hard
/// limit allows (raising the hard limit too where permitted, e.g. as root
/// outside a container). Children spawned afterwards inherit the result.
/// Returns the soft limit now in force.
pub fn raise_nofile(want: u64) -> io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if lim.rlim_max < want {
        let raised = libc::rlimit {
            rlim_cur: want,
            rlim_max: want,
        };
        // SAFETY: setrlimit reads the struct; failure leaves the limit as it was.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            return Ok(want);
        }
    }
    let soft = want.min(lim.rlim_max).max(lim.rlim_cur);
    let new = libc::rlimit {
        rlim_cur: soft,
        rlim_max: lim.rlim_max,
    };
    // SAFETY: as above.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &new) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(soft)
}

/// Resident memory of process `pid` in KiB (`VmRSS` in `/proc/PID/status`).
pub fn rss_kib(pid: u32) -> io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| io::Error::other(format!("no VmRSS for pid {pid}")))
}

/// Open file descriptors of process `pid` (entries of `/proc/PID/fd`).
pub fn fd_count(pid: u32) -> io::Result<usize> {
    Ok(std::fs::read_dir(format!("/proc/{pid}/fd"))?.count())
}

/// CPU time (user + system) process `pid` has used so far, in seconds.
pub fn cpu_secs(pid: u32) -> io::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) start at state (field 3).
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| io::Error::other("bad /proc stat"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15, i.e. 11 and 12 after the state.
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Ok((ticks(11) + ticks(12)) as f64 / hz)
}

/// CPU time (user + system) process `pid`'s threads have used so far, in
/// seconds at nanosecond resolution: the sum of the first field of
/// `/proc/PID/task/*/schedstat`. [`cpu_secs`] counts in clock ticks (10 ms),
/// too coarse for a phase that costs a few tens of milliseconds; threads
/// that have exited are not counted here (the relay's runtime keeps its).
pub fn cpu_secs_precise(pid: u32) -> io::Result<f64> {
    let mut ns: u64 = 0;
    for entry in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let path = entry?.path().join("schedstat");
        // A thread that exited between the listing and the read is skipped.
        if let Ok(stat) = std::fs::read_to_string(path) {
            ns += stat
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    Ok(ns as f64 / 1e9)
}

/// The CPUs this process may run on (1 if that cannot be read).
pub fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// One line describing the machine: cores, memory, CPU model, kernel.
pub fn machine() -> String {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let mem_gib = read("/proc/meminfo")
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kib| kib / 1024.0 / 1024.0)
        .unwrap_or(0.0);
    let cpu = read("/proc/cpuinfo")
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_default();
    let kernel = read("/proc/sys/kernel/osrelease").trim().to_owned();
    format!("{cores} cores, {mem_gib:.0} GiB, {cpu}, Linux {kernel}")
}

/// The 1-minute load average: how busy the machine was besides the bench.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

/// Process `pid` and every process descended from it (nginx's master and
/// its workers), found through the parent ids in `/proc/*/stat`.
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
            let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
            // After the command name: state, then the parent's id.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<u32>().ok());
            if let Some(ppid) = ppid {
                parents.push((child, ppid));
            }
        }
    }
    let mut tree = vec![pid];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        tree.extend(
            parents
                .iter()
                .filter(|(_, p)| *p == parent)
                .map(|(c, _)| *c),
        );
        i += 1;
    }
    tree
}

/// Resident memory of `pid` and its descendants, summed, in KiB. Pages that
/// several of them share (nginx's shared memory zone) count once per process.
pub fn tree_rss_kib(pid: u32) -> io::Result<u64> {
    let mut total = rss_kib(pid)?;
    for p in process_tree(pid).into_iter().skip(1) {
        total += rss_kib(p).unwrap_or(0);
    }
    Ok(total)
}

/// CPU time of `pid` and its descendants, summed, in seconds.
pub fn tree_cpu_secs(pid: u32) -> io::Result<f64> {
    let mut total = cpu_secs(pid)?;
    for p in process_tree(pid).into_iter().skip(1) {
        total += cpu_secs(p).unwrap_or(0.0);
    }
    Ok(total)
}

/// The CPUs this process may run on (`sched_getaffinity`), in order.
pub fn allowed_cpus() -> io::Result<Vec<usize>> {
    // SAFETY: an all-zero cpu_set_t is valid; sched_getaffinity fills it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: pid 0 is the calling thread; the size is the struct's own.
    if unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) } != 0
    {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: CPU_ISSET reads the set we own, for indices below CPU_SETSIZE.
    Ok((0..libc::CPU_SETSIZE as usize)
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect())
}

/// Restricts every thread of this process to `cpus` (`sched_setaffinity` on
/// each task in `/proc/self/task`; threads started later inherit it from
/// the thread that starts them).
pub fn pin_process(cpus: &[usize]) -> io::Result<()> {
    pin_tasks("/proc/self/task", cpus)
}

/// Restricts every thread of process `pid` and of its descendants (nginx's
/// master and workers) to `cpus`, as [`pin_process`] does for this one.
pub fn pin_tree(pid: u32, cpus: &[usize]) -> io::Result<()> {
    for p in process_tree(pid) {
        pin_tasks(&format!("/proc/{p}/task"), cpus)?;
    }
    Ok(())
}

/// `sched_setaffinity(cpus)` on every task listed in the directory `tasks`.
fn pin_tasks(tasks: &str, cpus: &[usize]) -> io::Result<()> {
    // SAFETY: an all-zero cpu_set_t is an empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &c in cpus {
        if c >= libc::CPU_SETSIZE as usize {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("CPU {c} is beyond what a CPU set holds"),
            ));
        }
        // SAFETY: CPU_SET writes into the set we own; `c` is below CPU_SETSIZE.
        unsafe { libc::CPU_SET(c, &mut set) };
    }
    for entry in std::fs::read_dir(tasks)? {
        let Some(tid) = entry?
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        // SAFETY: sched_setaffinity reads the set; a thread that has exited fails harmlessly.
        if unsafe { libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set) }
            != 0
        {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::ESRCH) {
                return Err(e);
            }
        }
    }
    Ok(())
}

/// This process pinned to some CPUs until dropped, then back on others.
pub struct Pinned {
    after: Vec<usize>,
}

impl Pinned {
    /// Pins every thread of this process to `cpus`; on drop, to `after`.
    pub fn to(cpus: &[usize], after: &[usize]) -> io::Result<Pinned> {
        pin_process(cpus)?;
        Ok(Pinned {
            after: after.to_vec(),
        })
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        let _ = pin_process(&self.after);
    }
}
