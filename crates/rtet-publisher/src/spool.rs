//! The disk spool: where events go when the in-memory queue is full, and
//! where a process leaves what the relay had not acked when it ended.
//!
//! A spool file holds one `publish` frame per line, exactly as it is sent.
//! Its name sorts by the time of its first event:
//! `rtet-<tag>-<first event, µs since epoch>-<pid>-<n>.spool`, where `tag`
//! is [`crate::Config::spool_tag`] (a hash of URL and key). Files are mode
//! 0600 in a directory of mode 0700.
//!
//! Whatever is in the spool is sent with the site's key, so the spool is
//! trusted only when nobody else can have put anything there: the directory
//! must be a real directory (not a symbolic link), owned by the user PHP runs
//! as, and writable by nobody else ([`ensure_dir`] refuses it otherwise, and
//! then nothing is read from it or written to it). Files are opened without
//! following links and must be regular files of that user, not writable by
//! others; any other file is left alone and reported.
//!
//! Ownership is an exclusive `flock`: whoever holds it delivers the file.
//! A process holds the lock on the overflow file it is writing and on the
//! files it claimed; a file whose lock is free belongs to nobody (its
//! writer ended) and the next process that starts a publisher for the same
//! relay claims it. Files are written under a temporary name and renamed, so
//! a claimer never sees half a file. A file with a line that is not a valid
//! `publish` frame is renamed to `*.corrupt` and reported, never sent.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::{Error, Event};

static FILE_SEQ: AtomicU64 = AtomicU64::new(1);

/// A spool file this process holds the lock of.
#[derive(Debug)]
pub struct SpoolFile {
    /// Where it is.
    pub path: PathBuf,
    /// The open, locked file.
    pub file: File,
    /// How many events it holds.
    pub events: u64,
}

/// Makes the spool directory (mode 0700) when it is missing, and refuses one
/// another local user could have put files in: a symbolic link, not a
/// directory, owned by another user, or writable by group or others. The
/// error says which, for PHP's log.
pub fn ensure_dir(dir: &Path) -> io::Result<()> {
    match fs::symlink_metadata(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)?;
        }
        Err(e) => return Err(e),
        Ok(_) => {}
    }
    let meta = fs::symlink_metadata(dir)?;
    let refuse = |why: String| {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "refusing the spool directory {}: {why}; files in it could come from another user",
                dir.display()
            ),
        ))
    };
    if meta.file_type().is_symlink() {
        return refuse("it is a symbolic link".into());
    }
    if !meta.is_dir() {
        return refuse("it is not a directory".into());
    }
    let me = effective_uid();
    if meta.uid() != me {
        return refuse(format!(
            "it is owned by uid {}, not by the PHP user (uid {me})",
            meta.uid()
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return refuse(format!(
            "it is writable by group or others (mode {:o}); make it 0700",
            meta.mode() & 0o7777
        ));
    }
    Ok(())
}

fn effective_uid() -> u32 {
    // SAFETY: geteuid cannot fail and touches no memory.
    unsafe { libc::geteuid() }
}

/// Opens a spool file for reading (and appending) without following a
/// symbolic link, and checks that it is a regular file of this user that
/// nobody else can write.
fn open_own(path: &Path, append: bool) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .append(append)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    let meta = file.metadata()?;
    let why = if !meta.is_file() {
        Some("it is not a regular file".to_owned())
    } else if meta.uid() != effective_uid() {
        Some(format!("it is owned by uid {}", meta.uid()))
    } else if meta.mode() & 0o022 != 0 {
        Some(format!(
            "it is writable by group or others (mode {:o})",
            meta.mode() & 0o7777
        ))
    } else {
        None
    };
    match why {
        Some(why) => Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("refusing spool file {}: {why}", path.display()),
        )),
        None => Ok(file),
    }
}

fn file_name(tag: &str, first_us: u64, n: Option<u64>) -> String {
    let n = n.unwrap_or_else(|| FILE_SEQ.fetch_add(1, Ordering::Relaxed));
    format!(
        "rtet-{tag}-{first_us:020}-{:010}-{n:06}.spool",
        std::process::id()
    )
}

fn try_lock(file: &File) -> bool {
    // SAFETY: flock on a descriptor we own; no memory is involved.
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

/// Creates a new spool file with `lines` and returns it, locked and open.
/// `first_us` (the time of its first event) orders it among other files;
/// `n` breaks ties within the process (the shutdown spool passes 0 so that
/// it sorts before this process's overflow files, whose events are newer).
pub fn create<'a>(
    dir: &Path,
    tag: &str,
    first_us: u64,
    n: Option<u64>,
    lines: impl Iterator<Item = &'a str>,
) -> io::Result<SpoolFile> {
    ensure_dir(dir)?;
    let name = file_name(tag, first_us, n);
    let path = dir.join(&name);
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut file = OpenOptions::new()
        .read(true)
        .append(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)?;
    if !try_lock(&file) {
        return Err(io::Error::other("cannot lock a new spool file"));
    }
    let mut count = 0u64;
    {
        let mut w = io::BufWriter::new(&mut file);
        for line in lines {
            w.write_all(line.as_bytes())?;
            w.write_all(b"\n")?;
            count += 1;
        }
        w.flush()?;
    }
    fs::rename(&tmp, &path)?;
    Ok(SpoolFile {
        path,
        file,
        events: count,
    })
}

impl SpoolFile {
    /// Appends one frame (the overflow path).
    pub fn append(&mut self, line: &str) -> io::Result<()> {
        let mut buf = Vec::with_capacity(line.len() + 1);
        buf.extend_from_slice(line.as_bytes());
        buf.push(b'\n');
        self.file.write_all(&buf)?;
        self.events += 1;
        Ok(())
    }

    /// Opens a reader over the file from its start.
    pub fn reader(&self) -> io::Result<SpoolReader> {
        let f = open_own(&self.path, false)?;
        Ok(SpoolReader {
            lines: BufReader::new(f),
            buf: String::new(),
        })
    }

    /// Deletes the file: every event in it was acked.
    pub fn remove(self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// Reads a spool file's events in order.
pub struct SpoolReader {
    lines: BufReader<File>,
    buf: String,
}

impl SpoolReader {
    /// The next event, or `None` at the end. Lines were validated when the
    /// file was claimed (or written by this process); a line that fails now is skipped.
    pub fn next_event(&mut self, origin: u64) -> Option<Event> {
        loop {
            self.buf.clear();
            match self.lines.read_line(&mut self.buf) {
                Ok(0) | Err(_) => return None,
                Ok(_) => {
                    let line = self.buf.trim_end_matches('\n');
                    if line.is_empty() {
                        continue;
                    }
                    if let Ok(frame) = rtet_protocol::frames::parse_publish(line) {
                        return Some(Event {
                            id: frame.id,
                            channel: frame.channel,
                            frame: line.to_owned(),
                            at_us: 0,
                            origin: Some(origin),
                        });
                    }
                }
            }
        }
    }
}

/// What [`claim`] found.
#[derive(Debug, Default)]
pub struct Claimed {
    /// Files now owned by this process, oldest first.
    pub files: Vec<SpoolFile>,
    /// One line per file set aside as corrupt or refused, for the PHP warning.
    pub warnings: Vec<String>,
    /// How many files were set aside as corrupt.
    pub corrupt: u64,
}

/// Claims every unowned spool file of `tag` in `dir`: locks it, checks every
/// line, and returns the good ones oldest first. Corrupt files are renamed
/// to `*.corrupt`; empty ones are deleted; files that are links, not this
/// user's or writable by others are left alone and reported. A directory
/// [`ensure_dir`] refuses is not read at all.
pub fn claim(dir: &Path, tag: &str) -> io::Result<Claimed> {
    let mut out = Claimed::default();
    match fs::symlink_metadata(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        _ => ensure_dir(dir)?,
    }
    let entries = fs::read_dir(dir)?;
    let prefix = format!("rtet-{tag}-");
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with(&prefix) && n.ends_with(".spool"))
        .collect();
    names.sort();
    for name in names {
        let path = dir.join(&name);
        let file = match open_own(&path, true) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => {
                let why = if e.raw_os_error() == Some(libc::ELOOP) {
                    format!(
                        "refusing spool file {}: it is a symbolic link",
                        path.display()
                    )
                } else {
                    e.to_string()
                };
                out.warnings.push(format!("rtet: {why}; not sent"));
                continue;
            }
        };
        if !try_lock(&file) {
            continue; // a live process owns it
        }
        if !path.exists() {
            continue; // delivered and removed by its owner just before we locked it
        }
        match check(&file) {
            Ok(0) => {
                let _ = fs::remove_file(&path);
            }
            Ok(events) => out.files.push(SpoolFile { path, file, events }),
            Err(reason) => {
                let aside = dir.join(format!("{name}.corrupt"));
                let _ = fs::rename(&path, &aside);
                out.corrupt += 1;
                out.warnings.push(format!(
                    "rtet: spool file {} is corrupt ({reason}); set aside as {}",
                    path.display(),
                    aside.display()
                ));
            }
        }
    }
    Ok(out)
}

/// Counts the events of a spool file, or says why it is not one.
fn check(file: &File) -> Result<u64, Error> {
    let file = file
        .try_clone()
        .map_err(|e| Error::CorruptSpool(e.to_string()))?;
    check_lines(BufReader::new(file))
}

/// Counts the `publish` frames of spool file content, one per line, or says
/// why it is not a spool file: a line cut off (no final newline), not UTF-8,
/// or not a valid `publish` frame. Empty lines are skipped.
pub fn check_lines(mut reader: impl BufRead) -> Result<u64, Error> {
    let mut buf = Vec::new();
    let mut count = 0u64;
    let mut line_no = 0u64;
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| Error::CorruptSpool(e.to_string()))?;
        if n == 0 {
            return Ok(count);
        }
        line_no += 1;
        if buf.last() != Some(&b'\n') {
            return Err(Error::CorruptSpool(format!("line {line_no} is cut off")));
        }
        let text = std::str::from_utf8(&buf[..buf.len() - 1])
            .map_err(|_| Error::CorruptSpool(format!("line {line_no} is not UTF-8")))?;
        if text.is_empty() {
            continue;
        }
        rtet_protocol::frames::parse_publish(text)
            .map_err(|e| Error::CorruptSpool(format!("line {line_no}: {}", e.message)))?;
        count += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn frame(id: &str) -> String {
        format!(
            r#"{{"type":"publish","id":"{id}","channel":"public","event":"e","data":{{"n":1}}}}"#
        )
    }

    #[test]
    fn written_files_are_private_and_claimed_in_order_once() {
        let dir = tempfile::tempdir().unwrap();
        let a = [frame("a1"), frame("a2")];
        let b = [frame("b1")];
        let fb = create(dir.path(), "t", 20, None, b.iter().map(String::as_str)).unwrap();
        let fa = create(dir.path(), "t", 10, None, a.iter().map(String::as_str)).unwrap();
        let mode = fs::metadata(&fa.path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // Still locked by their writer: nobody else may claim them.
        assert!(claim(dir.path(), "t").unwrap().files.is_empty());
        drop((fa, fb));
        let claimed = claim(dir.path(), "t").unwrap();
        assert_eq!(claimed.files.len(), 2);
        assert_eq!(claimed.files[0].events, 2, "older file first");
        let mut r = claimed.files[0].reader().unwrap();
        assert_eq!(r.next_event(0).unwrap().id, "a1");
        assert_eq!(r.next_event(0).unwrap().id, "a2");
        assert!(r.next_event(0).is_none());
        // Held by this claim; a second claimer finds nothing.
        let other = claim(dir.path(), "t").unwrap();
        assert!(other.files.is_empty());
        // Another tag's files are not ours.
        assert!(claim(dir.path(), "u").unwrap().files.is_empty());
    }

    #[test]
    fn corrupt_files_are_set_aside_with_a_warning() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path()
                .join("rtet-t-00000000000000000001-0000000001-000001.spool"),
            format!("{}\n{{\"type\":\"publish\",\"id\n", frame("x")),
        )
        .unwrap();
        fs::write(
            dir.path()
                .join("rtet-t-00000000000000000002-0000000001-000001.spool"),
            "not json\n",
        )
        .unwrap();
        let claimed = claim(dir.path(), "t").unwrap();
        assert!(claimed.files.is_empty());
        assert_eq!(claimed.warnings.len(), 2, "{:?}", claimed.warnings);
        let corrupt = fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".corrupt")
            })
            .count();
        assert_eq!(corrupt, 2);
    }

    #[test]
    fn a_missing_directory_has_nothing_to_claim() {
        let dir = tempfile::tempdir().unwrap();
        let claimed = claim(&dir.path().join("nope"), "t").unwrap();
        assert!(claimed.files.is_empty() && claimed.warnings.is_empty());
    }
}
