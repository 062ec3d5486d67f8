//! The I/O counters of one thread of another process, as the kernel keeps them
//! (`/proc/<pid>/task/<tid>/io`): the instruction guard's view of the SQLite writer thread's page
//! I/O, which callgrind does not count (it counts user-space instructions, and a `pwrite64` of a
//! WAL frame or a `pread64` of a page missing from SQLite's cache costs its time in the kernel).

use std::path::PathBuf;

/// Read and write system calls of one thread and the bytes they moved (`syscr`, `syscw`,
/// `rchar`, `wchar`: every `read`/`pread64`/`write`/`pwrite64`…, whatever the file, cached or
/// not).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IoCounters {
    pub read_calls: u64,
    pub write_calls: u64,
    pub read_bytes: u64,
    pub write_bytes: u64,
}

impl IoCounters {
    /// What happened between `earlier` and `self`.
    pub fn since(self, earlier: IoCounters) -> IoCounters {
        IoCounters {
            read_calls: self.read_calls.saturating_sub(earlier.read_calls),
            write_calls: self.write_calls.saturating_sub(earlier.write_calls),
            read_bytes: self.read_bytes.saturating_sub(earlier.read_bytes),
            write_bytes: self.write_bytes.saturating_sub(earlier.write_bytes),
        }
    }

    /// Parses the text of a `/proc/…/io` file.
    fn parse(text: &str) -> anyhow::Result<IoCounters> {
        let field = |name: &str| -> anyhow::Result<u64> {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .and_then(|v| v.trim().parse().ok())
                .ok_or_else(|| anyhow::anyhow!("no {name} in the I/O counters {text:?}"))
        };
        Ok(IoCounters {
            read_calls: field("syscr")?,
            write_calls: field("syscw")?,
            read_bytes: field("rchar")?,
            write_bytes: field("wchar")?,
        })
    }
}

/// One thread of a running process, found by its name.
pub struct ThreadIo {
    io: PathBuf,
}

impl ThreadIo {
    /// The thread of process `pid` named `name` (`/proc/<pid>/task/<tid>/comm`, at most 15
    /// bytes); exactly one must have it. Under valgrind the names are the program's own: each
    /// guest thread runs on a kernel thread of its own, and the `prctl(PR_SET_NAME)` by which
    /// glibc names the calling thread reaches the kernel (valgrind 3.19 checked; the process
    /// itself is named after the tool, e.g. `callgrind-amd64`).
    pub fn find(pid: u32, name: &str) -> anyhow::Result<ThreadIo> {
        let tasks = PathBuf::from(format!("/proc/{pid}/task"));
        let mut found = Vec::new();
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&tasks).map_err(|e| anyhow::anyhow!("{}: {e}", tasks.display()))? {
            let dir = entry?.path();
            // A thread that ended since the listing has no files left: not the one looked for.
            let Ok(comm) = std::fs::read_to_string(dir.join("comm")) else { continue };
            let comm = comm.trim_end_matches('\n');
            if comm == name {
                found.push(dir.join("io"));
            } else {
                names.push(comm.to_owned());
            }
        }
        match <[PathBuf; 1]>::try_from(found) {
            Ok([io]) => {
                let thread = ThreadIo { io };
                thread.read()?;
                Ok(thread)
            }
            Err(found) => anyhow::bail!(
                "process {pid} has {} threads named {name:?}, not one (the others: {names:?})",
                found.len()
            ),
        }
    }

    pub fn read(&self) -> anyhow::Result<IoCounters> {
        let path = self.io.display();
        let text = std::fs::read_to_string(&self.io).map_err(|e| {
            anyhow::anyhow!("{path}: {e} (the thread ended, or the kernel keeps no per-task I/O accounting)")
        })?;
        IoCounters::parse(&text).map_err(|e| anyhow::anyhow!("{path}: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_parse_and_subtract() {
        let text = "rchar: 8565\nwchar: 1121\nsyscr: 375\nsyscw: 407\nread_bytes: 0\nwrite_bytes: 0\n\
                    cancelled_write_bytes: 0\n";
        let now = IoCounters::parse(text).expect("parses");
        assert_eq!(now, IoCounters { read_calls: 375, write_calls: 407, read_bytes: 8565, write_bytes: 1121 });
        let before = IoCounters { read_calls: 300, write_calls: 400, read_bytes: 8000, write_bytes: 1000 };
        assert_eq!(now.since(before), IoCounters { read_calls: 75, write_calls: 7, read_bytes: 565, write_bytes: 121 });
        assert!(IoCounters::parse("rchar: 1\nwchar: 2\n").is_err());
    }

    /// This test's own thread, found by name, counts a write it makes.
    #[test]
    fn a_named_thread_is_found_and_its_writes_counted() {
        let dir = std::env::temp_dir().join(format!("thread-io-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join("f");
        let handle = std::thread::Builder::new()
            .name("io-probe-thread".into())
            .spawn(move || -> anyhow::Result<IoCounters> {
                let me = ThreadIo::find(std::process::id(), "io-probe-thread")?;
                let before = me.read()?;
                std::fs::write(&file, [0u8; 5000])?;
                Ok(me.read()?.since(before))
            })
            .expect("spawns");
        let wrote = handle.join().expect("joins").expect("counts");
        let _ = std::fs::remove_dir_all(&dir);
        assert!(wrote.write_calls >= 1, "{wrote:?}");
        assert!(wrote.write_bytes >= 5000, "{wrote:?}");
        assert!(ThreadIo::find(std::process::id(), "no-such-thread").is_err());
    }
}
