//! The Debian package's files (`crates/gateway/debian/`, packed by `cargo deb`; the test
//! command also builds the package and runs `systemd-analyze verify` on its unit): the
//! configuration it installs is one the gateway accepts, with SQLite in the service's state
//! directory and the simulator off, and the unit starts the gateway with that file.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use airtext_gateway::config::Config;

fn packaged(file: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("debian")
        .join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn the_packaged_configuration_is_valid_and_safe_by_default() {
    let config = Config::from_toml(&packaged("gateway.toml")).unwrap();
    config.validate().unwrap();
    assert_eq!(config.database_url, "sqlite:///var/lib/airtext/airtext.db");
    assert!(!config.simulator.enabled, "no virtual phones in production");
    assert!(config.listen.ip().is_loopback(), "{}", config.listen);
    assert!(config.carriers.is_empty());
}

#[test]
fn the_unit_runs_the_packaged_configuration_as_airtext_in_its_state_directory() {
    let unit = packaged("airtext-gateway.service");
    let lines: Vec<&str> = unit.lines().map(str::trim).collect();
    for expected in [
        "ExecStart=/usr/bin/airtext-gateway --config /etc/airtext/gateway.toml",
        "User=airtext",
        "StateDirectory=airtext",
        "ProtectSystem=strict",
        "NoNewPrivileges=true",
    ] {
        assert!(lines.contains(&expected), "the unit lacks {expected:?}");
    }
    let manifest =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
            .unwrap();
    assert!(manifest.contains(r#"conf-files = ["/etc/airtext/gateway.toml"]"#));
    assert!(manifest.contains(r#"["debian/gateway.toml", "etc/airtext/gateway.toml", "640"]"#));
}
