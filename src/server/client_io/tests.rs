use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

const LONG: Duration = Duration::from_secs(3600);

#[tokio::test(start_paused = true)]
async fn silence_fails_the_first_read_and_a_byte_lifts_the_deadline() {
    let (client, server) = tokio::io::duplex(64);
    let mut guarded = ClientIo::new(server, Duration::from_secs(5), LONG, Closed::default());
    let mut buf = [0u8; 8];
    let error = guarded.read(&mut buf).await.expect_err("timed out");
    assert_eq!(error.kind(), io::ErrorKind::TimedOut);

    // A byte of the HTTP/2 preface keeps the deadline: the sniff is still waiting.
    let (mut partial, server) = tokio::io::duplex(64);
    let mut guarded = ClientIo::new(server, Duration::from_secs(5), LONG, Closed::default());
    partial.write_all(b"PRI").await.expect("write");
    assert_eq!(guarded.read(&mut buf).await.expect("bytes"), 3);
    let error = guarded.read(&mut buf).await.expect_err("timed out");
    assert_eq!(error.kind(), io::ErrorKind::TimedOut);

    let (mut client2, server2) = tokio::io::duplex(64);
    let mut guarded = ClientIo::new(server2, Duration::from_secs(5), LONG, Closed::default());
    client2.write_all(b"G").await.expect("write");
    assert_eq!(guarded.read(&mut buf).await.expect("a byte"), 1);
    // Past the first byte, silence is someone else's business (hyper's header timer).
    let later = tokio::time::timeout(Duration::from_secs(60), guarded.read(&mut buf)).await;
    assert!(later.is_err(), "still waiting, no error after the deadline");
    drop(client);
}

#[tokio::test(start_paused = true)]
async fn a_write_nobody_reads_fails_after_the_send_timeout_and_a_slow_reader_does_not() {
    let (mut client, server) = tokio::io::duplex(16);
    let mut guarded = ClientIo::new(server, LONG, Duration::from_secs(5), Closed::default());
    // A slow reader: 16 bytes every 4 s keeps every write within 5 s of progress.
    let reader = tokio::spawn(async move {
        let mut buf = [0u8; 16];
        for _ in 0..8 {
            tokio::time::sleep(Duration::from_secs(4)).await;
            let _ = client.read(&mut buf).await;
        }
        client // then reads nothing more
    });
    guarded
        .write_all(&[b'x'; 16 * 8])
        .await
        .expect("slow but steady");
    let _client = reader.await.expect("reader");
    let error = guarded.write_all(&[b'y'; 64]).await.expect_err("stalled");
    assert_eq!(error.kind(), io::ErrorKind::TimedOut);
}
