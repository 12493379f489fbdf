//! `deploy/` read as a platform engineer would apply it, checked statically (no container
//! daemon or cluster runs here; `.ci/run` also validates the files with yamllint,
//! kubernetes-validate, hadolint and `systemd-analyze verify`):
//!
//! * the Dockerfile pins every base by digest, and the config its CMD names is one it copies,
//!   and valid; `.dockerignore` keeps `target/` out of the build context;
//! * each Kubernetes example's pagegate config is valid; the pod probes `/live` and `/ready` on
//!   the admin port; its grace period covers the drain; its memory limit leaves room above
//!   `max_held_bytes` (the formula of docs/deploy.md); `PAGEGATE_WORKERS` matches the CPU
//!   limit; the container runs read-only, non-root, without privilege escalation; images are
//!   tagged, never `latest`; objects carry the `app.kubernetes.io/*` labels.

use std::path::PathBuf;
use std::time::Duration;

use pagegate::Config;
use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// `pagegate check` on `text`, written where `name` says, without the environment.
fn valid(name: &str, text: &str) -> Config {
    let dir = crate::support::scratch_dir("deploy");
    let path = dir.join(name.replace('/', "_"));
    std::fs::write(&path, text).expect("write");
    Config::check(&path).unwrap_or_else(|e| panic!("{name} is not a valid config:\n{e}"))
}

#[test]
fn the_dockerfile_pins_its_bases_and_runs_a_config_it_holds() {
    // Instructions, their continued lines joined.
    let dockerfile = read("deploy/Dockerfile").replace("\\\n", " ");
    let lines: Vec<&str> = dockerfile.lines().map(str::trim).collect();
    let froms: Vec<&str> = lines
        .iter()
        .filter(|l| l.starts_with("FROM "))
        .copied()
        .collect();
    assert!(froms.len() >= 2, "a multi-stage build: {froms:?}");
    for from in &froms {
        let image = from.split_whitespace().nth(1).expect("an image");
        let digest = image.split_once("@sha256:").map(|(_, d)| d);
        assert!(
            digest.is_some_and(|d| d.len() == 64 && d.chars().all(|c| c.is_ascii_hexdigit())),
            "not pinned by digest: {from}"
        );
    }
    // CMD's --config is a file the final stage copies from the repository.
    let cmd = lines.iter().find(|l| l.starts_with("CMD ")).expect("a CMD");
    let args: Vec<String> = serde_json::from_str(&cmd["CMD ".len()..]).expect("CMD in exec form");
    let at = args.iter().position(|a| a == "--config").expect("--config");
    let config = &args[at + 1];
    let copied = lines
        .iter()
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from="))
        .find_map(|l| {
            let mut words = l.split_whitespace().skip(1);
            let (source, dest) = (words.next()?, words.next()?);
            (dest == config).then(|| source.to_owned())
        })
        .unwrap_or_else(|| panic!("the image does not hold {config}"));
    valid(&copied, &read(&copied));
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("HEALTHCHECK") && l.contains("pagegate")),
        "a HEALTHCHECK by `pagegate health`"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("USER ")),
        "a non-root USER"
    );
    let ignored = read(".dockerignore");
    assert!(ignored.lines().any(|l| l.trim() == "target/"), "{ignored}");
}

/// The documents of a multi-document YAML file.
fn documents(path: &str) -> Vec<Value> {
    serde_saphyr::from_multiple::<Value>(&read(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// `512Mi`, `1Gi`, `100M` in bytes.
fn quantity(text: &str) -> u64 {
    let units = [
        ("Ki", 1u64 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("M", 1_000_000),
    ];
    for (suffix, scale) in units {
        if let Some(n) = text.strip_suffix(suffix) {
            return n.parse::<u64>().expect("a number") * scale;
        }
    }
    text.parse().expect("a plain quantity")
}

/// A `preStop: {sleep: {seconds: N}}`, as a duration (zero without one).
fn pre_stop(container: &Value) -> Duration {
    let seconds = container["lifecycle"]["preStop"]["sleep"]["seconds"].as_u64();
    Duration::from_secs(seconds.unwrap_or(0))
}

/// One Kubernetes example: its objects, pagegate's config, its pod and containers.
struct Example {
    path: &'static str,
    docs: Vec<Value>,
    config: Config,
    pod: Value,
}

impl Example {
    fn read(path: &'static str) -> Self {
        let docs = documents(path);
        let of_kind = |kind: &str| {
            docs.iter()
                .find(|d| d["kind"] == kind)
                .unwrap_or_else(|| panic!("{path}: no {kind}"))
                .clone()
        };
        let map = of_kind("ConfigMap");
        let text = map["data"]["pagegate.yaml"]
            .as_str()
            .expect("pagegate.yaml");
        let config = valid(path, text);
        let pod = of_kind("Deployment")["spec"]["template"]["spec"].clone();
        Self {
            path,
            docs,
            config,
            pod,
        }
    }

    /// Containers and init containers.
    fn containers(&self) -> Vec<&Value> {
        ["containers", "initContainers"]
            .iter()
            .filter_map(|k| self.pod[*k].as_array())
            .flatten()
            .collect()
    }

    fn container(&self, name: &str) -> &Value {
        let found = self.containers().into_iter().find(|c| c["name"] == name);
        found.unwrap_or_else(|| panic!("{}: no container {name}", self.path))
    }

    /// Standard labels on every object; tagged images, never `latest`; the Secret shown.
    fn labels_images_and_secret(&self) {
        let path = self.path;
        for doc in &self.docs {
            assert!(
                doc["metadata"]["labels"]["app.kubernetes.io/name"].is_string(),
                "{path}: {} {} lacks app.kubernetes.io/name",
                doc["kind"],
                doc["metadata"]["name"]
            );
        }
        for c in self.containers() {
            let image = c["image"].as_str().expect("image");
            assert!(
                image.contains(':') && !image.ends_with(":latest"),
                "{path}: {image} floats"
            );
        }
        let env = self.container("pagegate")["env"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let secret = env
            .iter()
            .find_map(|e| e["valueFrom"]["secretKeyRef"]["name"].as_str())
            .expect("a secret");
        let shown = self
            .docs
            .iter()
            .any(|d| d["kind"] == "Secret" && d["metadata"]["name"] == secret);
        assert!(shown, "{path}: the Secret {secret} is not shown");
    }

    /// `/live` and `/ready` on the admin port, the port pagegate's admin listener has.
    fn probes(&self) {
        let (path, pagegate) = (self.path, self.container("pagegate"));
        for (probe, endpoint) in [("readinessProbe", "/ready"), ("livenessProbe", "/live")] {
            assert_eq!(pagegate[probe]["httpGet"]["path"], endpoint, "{path}");
            assert_eq!(pagegate[probe]["httpGet"]["port"], "admin", "{path}");
        }
        let ports = pagegate["ports"].as_array().expect("ports");
        let admin = ports
            .iter()
            .find(|p| p["name"] == "admin")
            .expect("an admin port");
        let listen = self.config.server.admin_listen.expect("admin.listen");
        assert_eq!(admin["containerPort"], listen.port(), "{path}");
    }

    /// A preStop sleep or drain_delay, not both; the app outlives pagegate's drain; the grace
    /// period covers every wait (docs/deploy.md).
    fn drain(&self) {
        let (path, pagegate, app) = (self.path, self.container("pagegate"), self.container("app"));
        let sleep = pre_stop(pagegate);
        let (drain, grace) = (
            self.config.server.drain_delay,
            self.config.server.shutdown_grace,
        );
        assert!(
            sleep.is_zero() || drain.is_zero(),
            "{path}: both a preStop sleep and drain_delay"
        );
        // Classic: both get SIGTERM at once. Native: pagegate only once the app has stopped.
        let native = pagegate["restartPolicy"] == "Always";
        let needed = if native { drain } else { drain + grace };
        assert!(
            pre_stop(app) >= needed.max(Duration::from_secs(5)),
            "{path}: the app's preStop sleep must cover {needed:?}"
        );
        let pagegate_stops = sleep + drain + grace;
        let stopped = if native {
            pre_stop(app) + pagegate_stops
        } else {
            pre_stop(app).max(pagegate_stops)
        };
        let period = self.pod["terminationGracePeriodSeconds"]
            .as_u64()
            .expect("set");
        let period = Duration::from_secs(period);
        assert!(
            period >= stopped + Duration::from_secs(5),
            "{path}: terminationGracePeriodSeconds {period:?} < {stopped:?} + 5s (preStop \
             {sleep:?}, drain_delay {drain:?}, shutdown_grace {grace:?}, the app's preStop)"
        );
    }

    /// The memory formula of docs/deploy.md, workers for the CPU limit, a locked-down container.
    fn resources_and_security(&self) {
        let (path, pagegate) = (self.path, self.container("pagegate"));
        let limits = &pagegate["resources"]["limits"];
        let memory = quantity(limits["memory"].as_str().expect("a memory limit"));
        let connections = u64::try_from(self.config.server.max_connections).expect("fits");
        let floor = self.config.max_held_bytes + connections * 40 * 1024 + 32 * 1024 * 1024;
        assert!(memory >= floor, "{path}: memory limit {memory} < {floor}");
        let cpu = limits["cpu"].as_str().expect("a CPU limit");
        let workers = pagegate["env"]
            .as_array()
            .and_then(|env| env.iter().find(|e| e["name"] == "PAGEGATE_WORKERS"))
            .and_then(|e| e["value"].as_str())
            .expect("PAGEGATE_WORKERS");
        assert_eq!(
            workers, cpu,
            "{path}: PAGEGATE_WORKERS matches the CPU limit"
        );
        let security = &pagegate["securityContext"];
        assert_eq!(security["readOnlyRootFilesystem"], true, "{path}");
        assert_eq!(security["allowPrivilegeEscalation"], false, "{path}");
        let non_root =
            security["runAsNonRoot"] == true || self.pod["securityContext"]["runAsNonRoot"] == true;
        assert!(non_root, "{path}: runAsNonRoot");
    }
}

#[test]
fn the_kubernetes_examples_probe_drain_and_fit_their_limits() {
    for path in ["deploy/k8s/sidecar.yaml", "deploy/k8s/native-sidecar.yaml"] {
        let example = Example::read(path);
        example.labels_images_and_secret();
        example.probes();
        example.drain();
        example.resources_and_security();
    }
    let native = documents("deploy/k8s/native-sidecar.yaml");
    let deployment = native
        .iter()
        .find(|d| d["kind"] == "Deployment")
        .expect("a Deployment");
    let init = &deployment["spec"]["template"]["spec"]["initContainers"][0];
    assert_eq!(init["restartPolicy"], "Always", "a native sidecar");
}

#[test]
fn the_systemd_unit_runs_the_installed_binary_on_a_host_config() {
    let unit = read("deploy/systemd/pagegate.service");
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("ExecStart");
    assert!(
        exec.starts_with("/usr/local/bin/pagegate run --config "),
        "{exec}"
    );
    for hardening in [
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "DynamicUser=yes",
    ] {
        assert!(unit.contains(hardening), "{hardening}");
    }
    // A refused reload fails `systemctl reload`, which a signal could not tell. No `--admin`:
    // PAGEGATE_ADMIN_LISTEN from the EnvironmentFile, which `run` follows too, must win.
    assert!(
        unit.lines()
            .any(|l| l == "ExecReload=/usr/local/bin/pagegate reload"),
        "{unit}"
    );
    // The host config the install lines copy keeps the admin listener on loopback.
    assert!(unit.contains("install -D -m 0644 deploy/systemd/pagegate.yaml /etc/pagegate/"));
    let host = pagegate::Config::parse("pagegate.yaml", &read("deploy/systemd/pagegate.yaml"))
        .expect("the host config validates");
    assert_eq!(
        host.server.admin_listen.map(|a| a.ip().is_loopback()),
        Some(true)
    );
}
