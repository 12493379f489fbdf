use super::*;

fn frame(kind: u8, flags: u8, stream: u32, payload: usize) -> Vec<u8> {
    let len = u32::try_from(payload).expect("small").to_be_bytes();
    let mut bytes = vec![len[1], len[2], len[3], kind, flags];
    bytes.extend_from_slice(&stream.to_be_bytes());
    bytes.resize(HEAD + payload, 0);
    bytes
}

#[test]
fn frames_split_anywhere_are_seen_once_each() {
    let mut stream = Vec::new();
    for (kind, payload) in [(HEADERS, 30), (DATA, 100), (PING, 8), (WINDOW_UPDATE, 4)] {
        stream.extend(frame(kind, 0, 1, payload));
    }
    for cut in [1, 3, 9, 10, 50] {
        let mut walker = Walker::default();
        let mut seen = Vec::new();
        for piece in stream.chunks(cut) {
            walker.feed(piece, |kind, _| seen.push(kind));
        }
        assert_eq!(
            seen,
            [HEADERS, DATA, PING, WINDOW_UPDATE],
            "pieces of {cut}"
        );
        assert!(walker.at_boundary());
    }
}

#[tokio::test(start_paused = true)]
async fn a_ping_flood_is_cut_at_the_bound_and_the_window_forgives() {
    let mut frames = Frames::new();
    let ping = frame(PING, 0, 0, 8);
    for _ in 0..HTTP2_MAX_CONTROL_FRAMES {
        assert!(!frames.read(&ping));
    }
    // A window later, the last one still weighs in full; two later, not at all.
    tokio::time::advance(2 * HTTP2_CONTROL_WINDOW).await;
    for _ in 0..HTTP2_MAX_CONTROL_FRAMES {
        assert!(!frames.read(&ping), "a window with nothing before it");
    }
    assert!(frames.read(&ping), "one past the bound");
}

#[tokio::test(start_paused = true)]
async fn a_burst_across_a_windows_edge_counts_whole() {
    let mut frames = Frames::new();
    let ping = frame(PING, 0, 0, 8);
    let burst = HTTP2_MAX_CONTROL_FRAMES * 99 / 100;
    tokio::time::advance(HTTP2_CONTROL_WINDOW * 99 / 100).await;
    for _ in 0..burst {
        assert!(!frames.read(&ping));
    }
    tokio::time::advance(HTTP2_CONTROL_WINDOW * 2 / 100).await;
    let cut = (0..burst).any(|_| frames.read(&ping));
    assert!(cut, "twice the bound within a fiftieth of the window");
    // Half a window on, half of a full window before still weighs.
    let mut frames = Frames::new();
    for _ in 0..HTTP2_MAX_CONTROL_FRAMES {
        assert!(!frames.read(&ping));
    }
    tokio::time::advance(HTTP2_CONTROL_WINDOW * 3 / 2).await;
    let passed = (0..HTTP2_MAX_CONTROL_FRAMES)
        .take_while(|_| !frames.read(&ping))
        .count();
    let half = usize::try_from(HTTP2_MAX_CONTROL_FRAMES / 2).expect("count");
    assert!(passed.abs_diff(half) <= 1, "{passed} passed");
}

#[test]
fn window_updates_the_data_sent_explains_are_free() {
    let mut frames = Frames::new();
    let data = frame(DATA, 0, 1, 16);
    let update = frame(WINDOW_UPDATE, 0, 1, 4);
    // A client granting window after each of 10 x the bound's DATA frames.
    for _ in 0..10 * HTTP2_MAX_CONTROL_FRAMES {
        frames.wrote(&data);
        assert!(!frames.read(&update));
        assert!(!frames.read(&update));
    }
    for _ in 0..HTTP2_MAX_CONTROL_FRAMES {
        assert!(!frames.read(&update));
    }
    assert!(frames.read(&update), "unexplained updates count");
}

#[test]
fn bandwidth_probe_pings_while_data_flows_are_free() {
    let mut frames = Frames::new();
    let data = frame(DATA, 0, 1, 16);
    let ping = frame(PING, 0, 0, 8);
    // gRPC: one PING per DATA frame received, 10 x the bound.
    for _ in 0..10 * HTTP2_MAX_CONTROL_FRAMES {
        frames.wrote(&data);
        assert!(!frames.read(&ping));
    }
}

#[test]
fn streams_earn_their_priority_and_reset_and_goaway_names_the_last() {
    let mut frames = Frames::new();
    for id in (1..2 * HTTP2_MAX_CONTROL_FRAMES).step_by(2) {
        assert!(!frames.read(&frame(HEADERS, 0, id, 10)));
        assert!(!frames.read(&frame(PRIORITY, 0, id, 5)));
        assert!(!frames.read(&frame(RST_STREAM, 0, id, 4)));
    }
    let goaway = frames.goaway().expect("between frames");
    let last = 2 * HTTP2_MAX_CONTROL_FRAMES - 1;
    assert_eq!(goaway[HEAD..HEAD + 4], last.to_be_bytes());
    assert_eq!(goaway[HEAD + 4..], ENHANCE_YOUR_CALM.to_be_bytes());
    // Half a frame of pagegate's written: no GOAWAY can go out now.
    frames.wrote(&frame(DATA, 0, 1, 100)[..20]);
    assert!(frames.goaway().is_none());
}
