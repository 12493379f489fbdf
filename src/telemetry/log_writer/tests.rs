use std::sync::mpsc;

use super::*;

/// A sink that reports each write it receives.
struct Sink(mpsc::Sender<Vec<u8>>);

impl Write for Sink {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let _ = self.0.send(bytes.to_vec());
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn lines_are_written_in_batches_and_flushed_on_drop() {
    let (tx, rx) = mpsc::channel();
    let (log, guard) = BufferedLog::spawn(Sink(tx)).expect("thread");
    let line = vec![b'x'; 1023];
    let mut lines = 0;
    while lines * 1024 < FLUSH_BYTES {
        let mut writer = log.make_writer();
        writer.write_all(&line).expect("write");
        writer.write_all(b"\n").expect("write");
        lines += 1;
    }
    let batch = rx
        .recv_timeout(FLUSH_INTERVAL / 2)
        .expect("a full buffer is written before the interval");
    assert_eq!(batch.len(), lines * 1024, "one write for all the lines");
    log.make_writer().write_all(b"last\n").expect("write");
    drop(guard);
    assert_eq!(rx.try_recv().expect("flushed on drop"), b"last\n");
    assert_eq!(log.drop_counter().dropped_lines(), 0);
}

#[test]
fn a_stuck_output_drops_and_counts_lines_instead_of_blocking() {
    /// An output that reports when it is entered, then blocks until the gate opens.
    struct Gated(Arc<Mutex<()>>, mpsc::Sender<()>);
    impl Write for Gated {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            let _ = self.1.send(());
            drop(self.0.lock());
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let gate = Arc::new(Mutex::new(()));
    let closed = gate.lock().expect("lock");
    let (entered, blocked) = mpsc::channel();
    let (log, guard) = BufferedLog::spawn(Gated(Arc::clone(&gate), entered)).expect("thread");
    let line = vec![b'y'; 64 * 1024];
    log.make_writer().write_all(&line).expect("write");
    blocked
        .recv_timeout(Duration::from_secs(5))
        .expect("the writer thread took the first batch and is now stuck");
    // Writers go on while the output is stuck; once the buffer is full, lines are dropped.
    for _ in 0..MAX_BUFFERED / line.len() + 2 {
        log.make_writer().write_all(&line).expect("never blocks");
    }
    assert_eq!(log.drop_counter().dropped_lines(), 2);
    drop(closed);
    drop(guard);
}

#[test]
fn exit_does_not_wait_forever_for_a_stuck_output() {
    struct Stuck;
    impl Write for Stuck {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            std::thread::sleep(Duration::from_secs(3600));
            Ok(0)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let (log, guard) = BufferedLog::spawn(Stuck).expect("thread");
    log.make_writer()
        .write_all(b"never written\n")
        .expect("write");
    let start = std::time::Instant::now();
    drop(guard);
    assert!(start.elapsed() < EXIT_FLUSH_WAIT + Duration::from_secs(1));
}
