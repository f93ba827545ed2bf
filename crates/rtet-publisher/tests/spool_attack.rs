//! The planted-spool attack: another local user puts a spool file where a
//! publisher will look for one (a shared directory, a link, a file of their
//! own), hoping it is sent with the site's key. Each case is refused with a
//! reason for PHP's log, and the planted event never reaches the relay,
//! while the site's own events still do.

mod common;

use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;

use common::*;
use rtet_publisher::{Config, Publisher};

/// The user the planted files belong to when the test can make them someone
/// else's (as root); `nobody` on Debian.
const OTHER_UID: u32 = 65534;

fn is_root() -> bool {
    // SAFETY: geteuid cannot fail and touches no memory.
    unsafe { libc::geteuid() == 0 }
}

fn chown(path: &Path, uid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), None).expect("chown");
}

/// Creates `parent/name` with exactly `mode` (the umask does not apply).
fn dir_with_mode(parent: &Path, name: &str, mode: u32) -> std::path::PathBuf {
    let dir = parent.join(name);
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).unwrap();
    dir
}

/// Writes a well-formed spool file for `cfg`'s relay into `dir`: an event a
/// site never sent, pointing its users to a phishing page.
fn plant(dir: &Path, cfg: &Config) -> std::path::PathBuf {
    let path = dir.join(format!(
        "rtet-{}-00000000000000000001-0000000001-000001.spool",
        cfg.spool_tag()
    ));
    let frame = r#"{"type":"publish","id":"planted-1","channel":"public","event":"user_registered","data":{"url":"https://phish.example/login"}}"#;
    std::fs::write(&path, format!("{frame}\n")).expect("plant");
    path
}

/// Starts a publisher for `cfg`, sends one genuine event and checks: the
/// start warned with `reason`, the relay has the genuine event and nothing
/// else, and the planted file is untouched.
fn assert_refused(relay: &Relay, cfg: Config, planted: &Path, reason: &str) {
    let before = std::fs::read(planted).ok();
    let (mut p, warnings) = Publisher::start(cfg).expect("publisher starts");
    assert!(
        warnings.iter().any(|w| w.contains(reason)),
        "a warning says {reason:?}: {warnings:?}"
    );
    assert_eq!(p.stats().spool_claimed, 0);
    p.enqueue(vec![event("genuine", 0, "public")]);
    assert!(p.flush(WAIT), "{:?}", p.stats());
    p.shutdown();
    let ids: Vec<String> = relay
        .replay("public")
        .iter()
        .map(|e| e["id"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        ids,
        [id("genuine", 0)],
        "only the site's own event reached the relay"
    );
    assert_eq!(
        std::fs::read(planted).ok(),
        before,
        "the planted file is left as it was"
    );
}

#[test]
fn a_spool_directory_others_can_write_is_refused() {
    let relay = Relay::start(relay_config());
    let tmp = tempfile::tempdir().unwrap();
    let dir = dir_with_mode(tmp.path(), "shared", 0o777);
    let cfg = publisher_config(relay.addr, &dir);
    let planted = plant(&dir, &cfg);
    assert_refused(&relay, cfg, &planted, "writable by group or others");
}

#[test]
fn a_spool_directory_that_is_a_link_is_refused() {
    let relay = Relay::start(relay_config());
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("elsewhere");
    std::fs::create_dir(&target).unwrap();
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o700)).unwrap();
    let link = tmp.path().join("spool");
    symlink(&target, &link).unwrap();
    let cfg = publisher_config(relay.addr, &link);
    let planted = plant(&target, &cfg);
    assert_refused(&relay, cfg, &planted, "symbolic link");
}

#[test]
fn a_spool_directory_of_another_user_is_refused() {
    let relay = Relay::start(relay_config());
    let tmp = tempfile::tempdir().unwrap();
    if is_root() {
        // Root can play the other user: the directory is theirs, private, with their file.
        let dir = tmp.path().join("theirs");
        std::fs::create_dir(&dir).unwrap();
        let cfg = publisher_config(relay.addr, &dir);
        let planted = plant(&dir, &cfg);
        chown(&planted, OTHER_UID);
        chown(&dir, OTHER_UID);
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        assert_refused(&relay, cfg, &planted, &format!("owned by uid {OTHER_UID}"));
    } else {
        // Without root, a directory of another user is one of the system's.
        let cfg = publisher_config(relay.addr, Path::new("/"));
        let (_p, warnings) = Publisher::start(cfg).expect("publisher starts");
        assert!(
            warnings.iter().any(|w| w.contains("owned by uid 0")),
            "{warnings:?}"
        );
    }
}

#[test]
fn a_spool_file_that_is_a_link_is_not_followed() {
    let relay = Relay::start(relay_config());
    let tmp = tempfile::tempdir().unwrap();
    let dir = dir_with_mode(tmp.path(), "spool", 0o700);
    let outside = tmp.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let cfg = publisher_config(relay.addr, &dir);
    let planted = plant(&outside, &cfg);
    symlink(&planted, dir.join(planted.file_name().unwrap())).unwrap();
    assert_refused(&relay, cfg, &planted, "symbolic link");
}

#[test]
fn a_spool_file_others_can_write_is_not_sent() {
    let relay = Relay::start(relay_config());
    let tmp = tempfile::tempdir().unwrap();
    let dir = dir_with_mode(tmp.path(), "spool", 0o700);
    let cfg = publisher_config(relay.addr, &dir);
    let planted = plant(&dir, &cfg);
    std::fs::set_permissions(&planted, std::fs::Permissions::from_mode(0o666)).unwrap();
    assert_refused(&relay, cfg, &planted, "writable by group or others");
}

#[test]
fn a_spool_file_of_another_user_is_not_sent() {
    let relay = Relay::start(relay_config());
    let tmp = tempfile::tempdir().unwrap();
    let dir = dir_with_mode(tmp.path(), "spool", 0o700);
    let cfg = publisher_config(relay.addr, &dir);
    let planted = plant(&dir, &cfg);
    if is_root() {
        chown(&planted, OTHER_UID);
        assert_refused(&relay, cfg, &planted, &format!("owned by uid {OTHER_UID}"));
    } else {
        // Without root no file of another user can be in a private directory
        // of ours; the file check is then the mode check above.
        std::fs::set_permissions(&planted, std::fs::Permissions::from_mode(0o622)).unwrap();
        assert_refused(&relay, cfg, &planted, "writable by group or others");
    }
}

#[test]
fn the_default_spool_directory_is_private_to_the_user() {
    let dir = rtet_publisher::config::default_spool_dir();
    // SAFETY: getuid cannot fail and touches no memory.
    let uid = unsafe { libc::getuid() };
    assert_eq!(
        dir.file_name().and_then(|n| n.to_str()),
        Some(format!("rtet-spool-{uid}").as_str())
    );
    let tmp = tempfile::tempdir().unwrap();
    let fresh = tmp.path().join("a").join("b");
    rtet_publisher::spool::ensure_dir(&fresh).expect("created");
    let mode = std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
}
