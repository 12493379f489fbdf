//! A listener that runs out of file descriptors backs off instead of spinning: the process,
//! started with a low `ulimit -n`, is flooded with connections it cannot accept, and its CPU
//! time over the next second is read from `/proc`.

use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::redis::free_port;

/// CPU time (user + system) of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc stat");
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after the name and state.
    fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime")
}

#[test]
fn a_metrics_listener_out_of_file_descriptors_does_not_spin() {
    let (port, metrics) = (free_port(), free_port());
    let path = std::env::temp_dir().join(format!("pagegate-emfile-{}.yaml", std::process::id()));
    std::fs::write(
        &path,
        format!(
            "listen: 127.0.0.1:{port}\nadmin: {{listen: 127.0.0.1:{metrics}, max_connections: 1024}}\naccess_log: false\n\
             max_connections: 8\nupstreams: {{app: {{url: 'http://127.0.0.1:9'}}}}\n\
             default: {{action: deny}}\n"
        ),
    )
    .expect("config");
    // 128 descriptors: enough to start, far fewer than the connections below.
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -n 128 && exec {} run --workers 1 --config {}",
            env!("CARGO_BIN_EXE_pagegate"),
            path.display()
        ))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start pagegate");
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", metrics)).is_err() {
        assert!(Instant::now() < deadline, "pagegate did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Each accepted connection holds a descriptor (it never sends a request); past about 120
    // the process has none left and the rest wait in the backlog (128 deep here: more would
    // block in connect), failing every accept.
    let held: Vec<TcpStream> = (0..200)
        .filter_map(|_| TcpStream::connect(("127.0.0.1", metrics)).ok())
        .collect();
    assert!(held.len() > 150, "only {} connections opened", held.len());
    std::thread::sleep(Duration::from_millis(300));
    // The process did run out: its descriptors are at the limit, so accepts are failing.
    let open = std::fs::read_dir(format!("/proc/{}/fd", child.id()))
        .expect("/proc fd")
        .count();
    assert!(
        open >= 120,
        "only {open} descriptors open: the limit was never reached"
    );
    let before = cpu_ticks(child.id());
    std::thread::sleep(Duration::from_secs(1));
    let spent = cpu_ticks(child.id()) - before;
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_file(&path);
    // A loop that retries at once burns a whole core: about 100 ticks a second.
    assert!(
        spent < 30,
        "{spent} ticks of CPU in one second: the listener spins"
    );
}
