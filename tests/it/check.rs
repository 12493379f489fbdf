//! `pagegate check` on good and broken files: exit codes and `FILE:LINE:COLUMN: …` lines.

use std::process::Command;

fn check(yaml: &str) -> (i32, String, String) {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("pagegate-check-{}-{n}.yaml", std::process::id()));
    std::fs::write(&path, yaml).expect("write config");
    let out = run(&path.to_string_lossy());
    let _ = std::fs::remove_file(&path);
    (
        out.0,
        out.1,
        out.2.replace(&*path.to_string_lossy(), "FILE"),
    )
}

fn run(path: &str) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_pagegate"))
        .args(["check", "--config", path])
        .output()
        .expect("run pagegate check");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_shipped_configs_are_valid() {
    for file in ["config/demo.yaml", "config/reference.yaml"] {
        let (code, stdout, stderr) = run(&format!("{}/{file}", env!("CARGO_MANIFEST_DIR")));
        assert_eq!(code, 0, "{file}: {stderr}");
        assert!(
            stdout.contains("route events: GET /events -> "),
            "{file}: {stdout}"
        );
    }
}

#[test]
fn a_valid_file_prints_one_line_per_route() {
    let (code, stdout, _) = check(
        "upstreams: {app: {url: 'http://127.0.0.1:9'}}\nroutes:\n  - {name: a, path: /a, upstream: app, list: {max_limit: 50, default_limit: 10}}\n  - {name: b, path: '/b/{*rest}', upstream: app}\n",
    );
    assert_eq!(code, 0);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert!(
        lines[1].starts_with(
            "route a: ANY /a -> app; list: limit default 10 max 50 (on_violation: clamp)"
        ),
        "{}",
        lines[1]
    );
    // In the words of the YAML: no Rust spellings, sizes as the file writes them.
    assert!(lines[1].ends_with("items / 8MiB"), "{}", lines[1]);
    assert_eq!(lines[2], "route b: ANY /b/{*rest} -> app");
}

#[test]
fn a_file_that_works_but_should_change_is_valid_with_its_warnings_located() {
    let (code, stdout, stderr) = check(
        "metrics_listen: 127.0.0.1:0\nupstreams: {app: {url: 'http://127.0.0.1:9'}}\nroutes:\n  - {name: a, path: /a, upstream: app, limits: {key: header, key_header: api_key, rate: {per_client: {requests: 5, per: 1m}}}}\n",
    );
    assert_eq!(code, 0, "{stderr}");
    let warnings: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("warning: "))
        .collect();
    assert_eq!(warnings.len(), 2, "{stdout}");
    assert!(
        warnings[0].contains(":1:17: `metrics_listen` is read as `admin.listen`"),
        "{}",
        warnings[0]
    );
    assert!(
        warnings[1].contains(":4:74: `key_header` is api_key, with `_`"),
        "{}",
        warnings[1]
    );
}

#[test]
fn an_unknown_key_is_reported_at_its_position_with_the_fix() {
    let (code, _, stderr) =
        check("upstreams:\n  app:\n    url: http://127.0.0.1:9\n    conect_timeout: 2s\n");
    assert_eq!(code, 1);
    assert!(
        stderr.starts_with("FILE:4:5: unknown field `conect_timeout`, expected one of url, host,"),
        "{stderr}"
    );
    assert!(stderr.contains("check the spelling"), "{stderr}");
}

#[test]
fn a_wrong_type_is_reported_with_what_was_found() {
    let (code, _, stderr) = check(
        "upstreams: {app: {url: 'http://127.0.0.1:9'}}\nroutes:\n  - path: /x\n    upstream: app\n    list:\n      max_limit: lots\n",
    );
    assert_eq!(code, 1);
    assert_eq!(
        stderr.trim(),
        "FILE:6:18: expected a whole number of 0 or more, found `lots`: write digits only, such as 100"
    );
}

#[test]
fn every_semantic_problem_is_listed_in_file_order() {
    let yaml = "\
listen: 127.0.0.1:99999
upstreams:
  app:
    url: http://127.0.0.1:9
    connect_timeout: 2 parsecs
routes:
  - path: /events
    upstream: ap
    list:
      default_limit: 100
      max_limit: 50
      max_bytes: lots
  - name: again
    path: /events
    upstream: app
  - path: /users/{id}
    upstream: app
  - path: /users/{name}
    upstream: app
";
    let (code, _, stderr) = check(yaml);
    assert_eq!(code, 1);
    let expected = [
        "FILE:1:9: `listen` is \"127.0.0.1:99999\", which is not an address: write IP:PORT, such as 127.0.0.1:8080",
        "FILE:5:22: `connect_timeout` is \"2 parsecs\", which is not a duration: write a number with a unit, such as 500ms, 2s or 5m",
        "FILE:8:15: route `/events` uses upstream `ap`, which is not declared under `upstreams`; declared: app",
        "FILE:11:18: `max_limit` (50) is below `default_limit` (100): raise max_limit or lower default_limit",
        "FILE:12:18: `max_bytes` is \"lots\", which is not a byte size: write a number with a unit, such as 512KiB or 8MiB",
        "FILE:14:11: route `again` (/events) overlaps route `/events`: give them different paths or disjoint `methods`",
    ];
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines, expected, "{stderr}");
}

#[test]
fn overlapping_parameter_routes_and_missing_cursor_keys_are_reported() {
    let yaml = "\
upstreams: {app: {url: 'http://127.0.0.1:9'}}
routes:
  - path: /users/{id}
    upstream: app
  - path: /users/{name}
    upstream: app
  - path: /a
    upstream: app
    list:
      keyset:
        keys: [{field: /id, param: id_gt}]
";
    let (code, _, stderr) = check(yaml);
    assert_eq!(code, 1);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{stderr}");
    assert!(lines[0].starts_with(
        "FILE:5:11: route `/users/{name}` (/users/{name}) overlaps route `/users/{id}`"
    ));
    assert!(
        lines[1].starts_with("FILE:11:9: `keyset` on route `/a` needs cursor signing keys"),
        "{}",
        lines[1]
    );
}

#[test]
fn a_missing_file_is_an_error() {
    let (code, _, stderr) = run("/nonexistent/pagegate.yaml");
    assert_eq!(code, 1);
    assert!(
        stderr.starts_with("/nonexistent/pagegate.yaml: cannot read the file"),
        "{stderr}"
    );
}

/// `pagegate ARGS…` with `env` set (and nothing else of the test's environment that pagegate
/// reads): its exit code, stdout and stderr.
fn pagegate(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_pagegate"));
    command
        .args(args)
        .env_remove("PAGEGATE_CONFIG")
        .env_remove("PAGEGATE_CHECK_KEY");
    for (name, value) in env {
        command.env(name, value);
    }
    let out = command.output().expect("run pagegate");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_validates_without_the_secrets_and_strict_env_requires_them() {
    let dir = crate::support::scratch_dir("check-env");
    let path = dir.join("pagegate.yaml");
    std::fs::write(
        &path,
        "upstreams: {app: {url: 'http://127.0.0.1:9'}}
cursors: {keys: [{id: 1, secret_env: PAGEGATE_CHECK_KEY}]}
routes:
  - {name: a, path: /a, upstream: app, list: {keyset: {keys: [{field: /id, param: id_gt}]}}}
",
    )
    .expect("write");
    let path = path.to_str().expect("utf-8");
    let (code, stdout, stderr) = pagegate(&["check", "--config", path], &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("`run` needs the environment variable(s) PAGEGATE_CHECK_KEY"),
        "{stdout}"
    );
    // Only the unset variable is waived: a problem elsewhere is still one.
    let (code, _, stderr) = pagegate(&["check", "--strict-env", "--config", path], &[]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("PAGEGATE_CHECK_KEY, which is not set"),
        "{stderr}"
    );
    // One root cause, one line: not a second asking for the `cursors` block that is there.
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    let key = "0123456789abcdef0123456789abcdef";
    let (code, stdout, stderr) = pagegate(
        &["check", "--strict-env", "--config", path],
        &[("PAGEGATE_CHECK_KEY", key)],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(!stdout.contains("needs the environment"), "{stdout}");
    // The file named by PAGEGATE_CONFIG, as `run` reads it.
    let (code, stdout, stderr) = pagegate(&["check"], &[("PAGEGATE_CONFIG", path)]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("route a: "), "{stdout}");
    // The listen address `run` would use, as `run` reads it.
    let env = [
        ("PAGEGATE_CONFIG", path),
        ("PAGEGATE_LISTEN", "127.0.0.1:7777"),
    ];
    let (code, stdout, stderr) = pagegate(&["check"], &env);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("ok, listening on 127.0.0.1:7777"),
        "{stdout}"
    );
    // What `check` accepted with a stand-in secret never serves: it would sign cursors with it.
    let checked = pagegate::Config::check(std::path::Path::new(path)).expect("checks");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let refused = runtime
        .block_on(pagegate::Server::bind(checked))
        .err()
        .expect("refused");
    assert!(
        refused.to_string().contains("unset: PAGEGATE_CHECK_KEY"),
        "{refused}"
    );
}

#[test]
fn version_names_the_commit() {
    let (code, stdout, _) = pagegate(&["--version"], &[]);
    assert_eq!(code, 0);
    let line = stdout.trim();
    let (version, commit) = line
        .strip_prefix(concat!("pagegate ", env!("CARGO_PKG_VERSION"), " ("))
        .and_then(|rest| rest.strip_suffix(')'))
        .map(|commit| (env!("CARGO_PKG_VERSION"), commit))
        .unwrap_or_else(|| panic!("{line}"));
    assert!(!version.is_empty());
    // Built from this checkout: the commit's first 12 hex digits, or `unknown` elsewhere.
    let head = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    match head {
        Some(head) => assert_eq!(commit, head, "{line}"),
        None => assert_eq!(commit, "unknown", "{line}"),
    }
}

#[test]
fn a_string_where_a_number_belongs_is_refused_with_the_fix() {
    let (code, _, stderr) = check(
        "upstreams: {app: {url: 'http://127.0.0.1:9'}}\nroutes:\n  - {name: a, path: /a, upstream: app, list: {default_limit: '100'}}\n",
    );
    assert_eq!(code, 1);
    assert_eq!(
        stderr.trim(),
        "FILE:3:62: expected a whole number of 0 or more, found the quoted string '100': write it without quotes: 100",
    );
}

#[test]
fn a_duplicate_key_and_a_short_indent_are_explained_in_pagegate_s_words() {
    let (code, _, stderr) = check(
        "upstreams: {app: {url: 'http://127.0.0.1:9'}}\nupstreams: {b: {url: 'http://127.0.0.1:9'}}\n",
    );
    assert_eq!(code, 1);
    assert!(
        stderr.starts_with("FILE:2:1: `upstreams` is written twice in the same mapping: keep one"),
        "{stderr}"
    );
    assert!(!stderr.contains("DuplicateKeyPolicy"), "{stderr}");
    let (code, _, stderr) = check(
        "upstreams:\n  app: {url: 'http://127.0.0.1:9'}\nroutes:\n  - name: a\n    path: /a\n    upstream: app\n    list:\n      default_limit: 100\n     max_limit: 1000\n",
    );
    assert_eq!(code, 1);
    assert_eq!(
        stderr.lines().count(),
        1,
        "one root cause, one line: {stderr}"
    );
    assert!(
        stderr.starts_with("FILE:9:6: this line's indentation does not match"),
        "{stderr}"
    );
    assert!(!stderr.contains("digits"), "{stderr}");
}

#[test]
fn a_lowercase_method_gives_one_line() {
    let (code, _, stderr) = check(
        "upstreams: {app: {url: 'http://127.0.0.1:9'}}\nroutes:\n  - {name: a, path: /a, upstream: app, methods: [get]}\n",
    );
    assert_eq!(code, 1);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("write methods in capitals, e.g. GET"),
        "{stderr}"
    );
}

#[test]
fn check_names_the_certificates_and_when_they_expire() {
    let dir = crate::support::scratch_dir("check-tls");
    let ca = crate::support::tls::Ca::new("check CA");
    let server = ca.issue(&["localhost"], &dir, "server");
    let ca_file = ca.write(&dir, "ca.pem");
    let path = dir.join("pagegate.yaml");
    std::fs::write(
        &path,
        format!(
            "tls: {{cert_file: '{}', key_file: '{}', client_ca_file: '{}'}}\n\
             upstreams: {{app: {{url: 'https://127.0.0.1:9', tls: {{ca_file: '{}'}}}}}}\n",
            server.cert.display(),
            server.key.display(),
            ca_file.display(),
            ca_file.display(),
        ),
    )
    .expect("write");
    let (code, stdout, stderr) =
        pagegate(&["check", "--config", path.to_str().expect("utf-8")], &[]);
    assert_eq!(code, 0, "{stderr}");
    let expected = format!(
        "tls: {} (expires 2030-01-01T00:00:00Z), client certificates from {}",
        server.cert.display(),
        ca_file.display()
    );
    assert!(stdout.contains(&expected), "{expected}\nnot in:\n{stdout}");
    let upstream = format!(
        "upstream app: https, verified against {}",
        ca_file.display()
    );
    assert!(stdout.contains(&upstream), "{stdout}");
}

/// A chain whose intermediate expires before its certificate: said, not failed (the file may
/// carry a cross-sign clients no longer use); one whose intermediate outlives it: not said.
#[test]
fn check_warns_of_an_intermediate_that_expires_before_the_certificate() {
    let dir = crate::support::scratch_dir("check-chain");
    let root = crate::support::tls::Ca::new("check root");
    for (years, warned) in [((2019, 2025), true), ((2019, 2035), false)] {
        let intermediate = root.intermediate_valid("check intermediate", years);
        let server = intermediate.issue(&["localhost"], &dir, "server");
        std::fs::write(
            &server.cert,
            format!("{}{}", server.cert_pem, intermediate.pem),
        )
        .expect("chain");
        let path = dir.join("pagegate.yaml");
        std::fs::write(
            &path,
            format!(
                "tls: {{cert_file: '{}', key_file: '{}'}}
upstreams: {{app: {{url: 'http://127.0.0.1:9'}}}}
",
                server.cert.display(),
                server.key.display(),
            ),
        )
        .expect("write");
        let (code, stdout, stderr) =
            pagegate(&["check", "--config", path.to_str().expect("utf-8")], &[]);
        assert_eq!(code, 0, "{stdout}{stderr}");
        let warning = format!(
            "warning: listener: {}: certificate 2 of 2 in the file expired 2025-01-01T00:00:00Z, before the first one (2030-01-01T00:00:00Z)",
            server.cert.display()
        );
        assert_eq!(
            stdout.contains(&warning),
            warned,
            "{warning}
{stdout}"
        );
        assert_eq!(stdout.contains("warning: listener:"), warned, "{stdout}");
    }
}

#[test]
fn check_fails_on_a_certificate_that_cannot_be_presented_now() {
    let dir = crate::support::scratch_dir("check-expired");
    let ca = crate::support::tls::Ca::new("check CA");
    let server = ca.issue_valid(&["localhost"], &dir, "server", (2019, 2020));
    let path = dir.join("pagegate.yaml");
    std::fs::write(
        &path,
        format!(
            "tls: {{cert_file: '{}', key_file: '{}'}}\nupstreams: {{app: {{url: 'http://127.0.0.1:9'}}}}\n",
            server.cert.display(),
            server.key.display(),
        ),
    )
    .expect("write");
    let (code, stdout, stderr) =
        pagegate(&["check", "--config", path.to_str().expect("utf-8")], &[]);
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains("(expires INVALID: expired 2020-01-01T00:00:00Z)"),
        "{stdout}"
    );
    assert!(
        !stdout.contains(": ok,"),
        "no ok before a failure: {stdout}"
    );
    assert!(stderr.contains("renew it"), "{stderr}");
}

#[test]
fn an_empty_trust_store_names_the_key_that_replaces_it() {
    let dir = crate::support::scratch_dir("check-trust");
    let path = dir.join("pagegate.yaml");
    std::fs::write(&path, "").expect("write");
    let cases = [
        (
            "rate_limit_service: {address: 'https://rls:8081', domain: d}\nupstreams: {app: {url: 'http://app:80'}}\ndefault: {action: pass, upstream: app, limits: {store: envoy_rls}}\n",
            "rate_limit_service: the system's trust store holds no CA certificate",
        ),
        (
            "upstreams: {app: {url: 'https://app:8443'}}\ndefault: {action: pass, upstream: app}\n",
            "upstream `app`: the system's trust store holds no CA certificate",
        ),
        (
            "identities: {corp: {algorithms: [RS256], issuer: i, audience: a, jwks_url: 'https://idp/jwks'}}\nupstreams: {app: {url: 'http://app:80'}}\ndefault: {action: pass, upstream: app}\n",
            "identities.corp: the system's trust store holds no CA certificate",
        ),
        (
            "postgres: {main: {url: 'postgres://u@db/app?sslmode=verify-full'}}\ncursors: {keys: [{id: 1, secret: test-secret-test-secret-test-secret-0123}]}\nroutes:\n  - {name: t, path: /t, table: {database: main, name: t, columns: [id], key: [id]}}\n",
            "postgres `main`: the system's trust store holds no CA certificate",
        ),
    ];
    let empty = dir.join("none.pem");
    std::fs::write(&empty, "").expect("write");
    for (yaml, says) in cases {
        std::fs::write(&path, yaml).expect("write");
        let env = [
            ("SSL_CERT_FILE", empty.to_str().expect("utf-8")),
            ("SSL_CERT_DIR", "/nonexistent"),
        ];
        let config = path.to_str().expect("utf-8");
        let (code, _, stderr) = pagegate(&["check", "--config", config], &env);
        assert_ne!(code, 0, "check {yaml}");
        assert!(
            stderr.contains(says) && stderr.contains("ca_file"),
            "check {yaml}: {stderr}"
        );
        // And `run` refuses to start, with the same words.
        let mut run = Command::new(env!("CARGO_BIN_EXE_pagegate"))
            .args(["run", "--config", config, "--listen", "127.0.0.1:0"])
            .envs(env)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run pagegate");
        let started = std::time::Instant::now();
        while run.try_wait().expect("wait").is_none() {
            if started.elapsed() > std::time::Duration::from_secs(10) {
                run.kill().expect("kill");
                panic!("run started without a trust store: {yaml}");
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let out = run.wait_with_output().expect("output");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains(says),
            "run {yaml}: {stderr}"
        );
    }
}
