//! Property tests of the spool file decoder: any bytes are counted as
//! `publish` frames or refused as corrupt (never a panic), and a file of
//! valid frames counts exactly its frames. 64 cases per property; set
//! `PROPTEST_CASES` for a long run.

use proptest::prelude::*;
use rtet_publisher::publish_frame;
use rtet_publisher::spool::check_lines;

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    // Failures print their minimal input; nothing is written into the source tree.
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn frame() -> impl Strategy<Value = String> {
    (
        "[A-Za-z0-9_.:-]{1,64}",
        "[A-Za-z0-9_.:@-]{1,128}",
        "[A-Za-z0-9_.:-]{1,64}",
        any::<String>(),
        prop::option::of(any::<u64>()),
    )
        .prop_map(|(id, channel, event, data, ts)| {
            publish_frame(
                &id,
                &channel,
                &event,
                &serde_json::Value::from(data).to_string(),
                ts,
            )
        })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_bytes_are_counted_or_refused(bytes in any::<Vec<u8>>()) {
        let _ = check_lines(&bytes[..]);
    }

    #[test]
    fn a_file_of_frames_counts_its_frames(frames in prop::collection::vec(frame(), 0..20), blank in 0usize..3) {
        let mut text = String::new();
        for f in &frames {
            text.push_str(f);
            text.push('\n');
            text.push_str(&"\n".repeat(blank));
        }
        prop_assert_eq!(check_lines(text.as_bytes()).ok(), Some(frames.len() as u64));
    }

    #[test]
    fn a_cut_off_or_damaged_file_is_refused(frames in prop::collection::vec(frame(), 1..10), cut in any::<prop::sample::Index>(), junk in "[^\\n]{1,20}") {
        let text: String = frames.iter().map(|f| format!("{f}\n")).collect();
        // Cut inside the last frame: the last line has no newline.
        let last = text.len() - frames.last().map_or(0, |f| f.len() + 1);
        let at = last + cut.index(text.len() - last - 1).max(1);
        prop_assert!(check_lines(&text.as_bytes()[..at]).is_err());
        // A line that is not a frame.
        let damaged = format!("{text}{junk}\n");
        prop_assert!(check_lines(damaged.as_bytes()).is_err());
    }
}
