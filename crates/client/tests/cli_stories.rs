//! Stories with the real `airtext` binary (separate processes) against a gateway in this
//! process: sign-up, texting, JSON listings, watch, the outbox across an outage, a sync killed
//! mid-way, exit codes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::io::BufRead;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{Device, TestGateway};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_airtext");

fn airtext(dir: &Path, gateway: &str, args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command
        .args(["--gateway", gateway, "--data-dir"])
        .arg(dir)
        .args(args)
        .env("AIRTEXT_PASSWORD", common::PASSWORD)
        .env_remove("AIRTEXT_PROXY");
    command
}

async fn run(dir: &Path, gateway: &str, args: &[&str]) -> Output {
    let mut command = airtext(dir, gateway, args);
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

async fn ok(dir: &Path, gateway: &str, args: &[&str]) -> String {
    let out = run(dir, gateway, args).await;
    assert!(
        out.status.success(),
        "airtext {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

async fn json(dir: &Path, gateway: &str, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    serde_json::from_str(&ok(dir, gateway, &all).await).unwrap()
}

/// How long a condition polled for may take: generous, so a busy machine only makes the test
/// slower, never wrong.
const DEADLINE: Duration = Duration::from_secs(120);

/// Polls `check` until it gives a value, for at most [`DEADLINE`].
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(started.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Starts `airtext watch` with both outputs read line by line on threads, and waits until it
/// says it is connected.
struct Watch {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Watch {
    async fn start(dir: &Path, gateway: &str, args: &[&str]) -> Watch {
        let mut all = args.to_vec();
        all.push("watch");
        let mut child = airtext(dir, gateway, &all)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (line_tx, lines) = std::sync::mpsc::channel();
        let (note_tx, notes) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                let _ = line_tx.send(line);
            }
        });
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                let _ = note_tx.send(line);
            }
        });
        tokio::task::spawn_blocking(move || loop {
            let line = notes
                .recv_timeout(DEADLINE)
                .expect("watch says it is connected");
            if line.contains("airtext: connected") {
                break;
            }
        })
        .await
        .unwrap();
        Watch { child, lines }
    }

    /// The next line `watch` prints.
    async fn next_line(self) -> (Watch, String) {
        tokio::task::spawn_blocking(move || {
            let line = self
                .lines
                .recv_timeout(DEADLINE)
                .expect("watch printed a line");
            (self, line)
        })
        .await
        .unwrap()
    }

    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn texting_listing_watching_and_errors_through_the_binary() {
    let gw = TestGateway::start().await;
    let url = gw.url.clone();
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    ok(a.path(), &url, &["signup", "alice"]).await;
    ok(
        b.path(),
        &url,
        &["signup", "bob", "--email", "bob@example.org"],
    )
    .await;

    // The token file is private.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(a.path().join("airtext.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        // So are the data directory, the profile folder and the cache files in it.
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(a.path()), 0o700);
        assert_eq!(mode(&a.path().join("profiles")), 0o700);
        for file in std::fs::read_dir(a.path().join("profiles")).unwrap() {
            let file = file.unwrap().path();
            assert_eq!(mode(&file), 0o600, "{}", file.display());
        }
    }

    // B watches (one JSON object per line) while A texts.
    let watch = Watch::start(b.path(), &url, &["--json"]).await;

    let sent = json(a.path(), &url, &["send", "@bob", "hello from the CLI"]).await;
    assert_eq!(sent["status"], "delivered");
    assert_eq!(sent["path"], "cloud");
    assert_eq!(sent["route"], "in_network");

    let (watch, line) = watch.next_line().await;
    let seen: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(seen["body"], "hello from the CLI");
    assert_eq!(seen["direction"], "inbound");
    watch.stop();

    // Listings are JSON arrays with the API's field names.
    let conversations = json(a.path(), &url, &["conversations"]).await;
    assert_eq!(conversations[0]["peer"], "@bob");
    assert_eq!(
        conversations[0]["last_message"]["body"],
        "hello from the CLI"
    );
    let messages = json(a.path(), &url, &["messages", "@bob", "--limit", "5"]).await;
    let m = &messages[0];
    for field in [
        "id",
        "conversation_id",
        "direction",
        "from",
        "to",
        "body",
        "status",
        "route",
        "client_id",
        "encoding",
        "segments",
        "created_at",
        "updated_at",
    ] {
        assert!(m.get(field).is_some(), "{field} missing in {m}");
    }
    let found = json(b.path(), &url, &["search", "cli"]).await;
    assert_eq!(found.as_array().unwrap().len(), 1);
    let contact = json(
        a.path(),
        &url,
        &["contact", "set-path", "+14155550123", "cellular"],
    )
    .await;
    assert_eq!(contact["path"], "cellular");
    assert_eq!(contact["address"], "+14155550123");

    // Errors: one line and exit 1; usage: exit 2.
    let out = run(a.path(), &url, &["send", "not an address!!", "x"]).await;
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("airtext: error: "), "{err}");
    let out = run(a.path(), &url, &["send"]).await;
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(BIN)
        .args(["--gateway", &url, "--data-dir"])
        .arg(tempfile::tempdir().unwrap().path())
        .args(["login", "alice"])
        .env("AIRTEXT_PASSWORD", "wrong password")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("error"));

    ok(a.path(), &url, &["logout"]).await;
    let out = run(a.path(), &url, &["conversations"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not signed in"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_text_survives_a_gateway_outage_and_goes_once() {
    let mut gw = TestGateway::start().await;
    let url = gw.url.clone();
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    ok(a.path(), &url, &["signup", "alice"]).await;
    ok(b.path(), &url, &["signup", "bob"]).await;

    gw.stop().await;
    let out = run(
        a.path(),
        &url,
        &["--json", "send", "@bob", "sent during the outage"],
    )
    .await;
    // 3: safely in the outbox, will be sent; not an error to retry.
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let queued: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(queued["status"], "queued");
    let note = String::from_utf8_lossy(&out.stderr);
    assert!(note.contains("queued, will be sent"), "{note}");
    // Syncing while down fails clearly, with the code for "unreachable".
    let out = run(a.path(), &url, &["sync"]).await;
    assert_eq!(out.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach the gateway"));
    let waiting = json(a.path(), &url, &["outbox"]).await;
    assert_eq!(waiting.as_array().unwrap().len(), 1);

    gw.restart().await;
    // A sync asked for by hand sends what waits at once, whatever its back-off said.
    ok(a.path(), &url, &["sync"]).await;
    let waiting = json(a.path(), &url, &["outbox"]).await;
    assert_eq!(waiting.as_array().unwrap().len(), 0, "{waiting}");
    ok(a.path(), &url, &["sync"]).await;

    ok(b.path(), &url, &["sync"]).await;
    let at_b = json(b.path(), &url, &["messages", "@alice"]).await;
    assert_eq!(at_b.as_array().unwrap().len(), 1, "{at_b}");
    let at_a = json(a.path(), &url, &["messages", "@bob"]).await;
    assert_eq!(at_a.as_array().unwrap().len(), 1, "{at_a}");
    assert_eq!(at_a[0]["status"], "delivered");
    gw.stop().await;
}

fn cache_file(dir: &Path) -> std::path::PathBuf {
    std::fs::read_dir(dir.join("profiles"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "sqlite3"))
        .unwrap()
}

fn read_cursor_and_count(path: &Path) -> Option<(i64, i64)> {
    let conn =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .ok()?;
    let cursor = conn
        .query_row("SELECT cursor FROM sync_state", [], |r| r.get(0))
        .ok()?;
    let count = conn
        .query_row("SELECT count(*) FROM messages", [], |r| r.get(0))
        .ok()?;
    Some((cursor, count))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_killed_mid_way_resumes_with_nothing_skipped_or_doubled() {
    let gw = TestGateway::start().await;
    let url = gw.url.clone();
    let a1 = Device::sign_up(&url, "alice").await;
    let _b = Device::sign_up(&url, "bob").await;
    let a2 = tempfile::tempdir().unwrap();
    ok(
        a2.path(),
        &url,
        &["login", "alice", "--device-name", "tablet"],
    )
    .await;

    let total = 10_000;
    common::flood(&a1, "@bob", total, 32).await;
    let head = a1.client.sync().await.unwrap().cursor;
    let path = cache_file(a2.path());

    // Kill `airtext sync` (SIGKILL: no clean-up) once it has committed some pages but not all.
    let mut killed_at = None;
    for _attempt in 0..5 {
        let mut child = airtext(a2.path(), &url, &["sync"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(30) {
            if let Some((cursor, _)) = read_cursor_and_count(&path) {
                if cursor > 0 && cursor < head {
                    child.kill().unwrap();
                    killed_at = Some(cursor);
                    break;
                }
                if cursor >= head {
                    break;
                }
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let _ = child.wait();
        if killed_at.is_some() {
            break;
        }
    }
    let (cursor, count) = read_cursor_and_count(&path).unwrap();
    if let Some(at) = killed_at {
        assert!(cursor < head, "killed at {at}, cursor {cursor}");
        // What was committed is exactly the events up to the cursor.
        assert!(count > 0 && i64::try_from(total).unwrap() > count);
    } else {
        eprintln!("note: every sync finished before it could be killed");
    }

    ok(a2.path(), &url, &["sync"]).await;
    let (cursor, count) = read_cursor_and_count(&path).unwrap();
    assert_eq!(cursor, head);
    assert_eq!(count, i64::try_from(total).unwrap());
    let conn = rusqlite::Connection::open(&path).unwrap();
    let distinct: i64 = conn
        .query_row("SELECT count(DISTINCT server_id) FROM messages", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(distinct, count);
}

/// Two `airtext` processes on one profile work side by side: with `watch` running, 40 sends at
/// once each end done (0) or queued (3, the text in the outbox), and each text arrives once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forty_sends_beside_a_watch_on_one_profile_each_arrive_once() {
    let gw = TestGateway::start().await;
    let url = gw.url.clone();
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    ok(a.path(), &url, &["signup", "alice"]).await;
    ok(b.path(), &url, &["signup", "bob"]).await;
    let watch = Watch::start(a.path(), &url, &[]).await;

    let total = 40;
    let children: Vec<_> = (0..total)
        .map(|i| {
            airtext(
                a.path(),
                &url,
                &["--json", "send", "@bob", &format!("side by side {i}")],
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
        })
        .collect();
    let outputs = tokio::task::spawn_blocking(move || {
        children
            .into_iter()
            .map(|c| c.wait_with_output().unwrap())
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    let mut queued = 0;
    for out in &outputs {
        let err = String::from_utf8_lossy(&out.stderr);
        match out.status.code() {
            Some(0) => {}
            Some(3) => {
                let message: Value = serde_json::from_slice(&out.stdout).unwrap();
                assert_eq!(message["status"], "queued", "{err}");
                queued += 1;
            }
            other => panic!("send exited {other:?}: {err}"),
        }
    }
    if queued > 0 {
        let waiting = json(a.path(), &url, &["outbox"]).await;
        assert!(waiting.as_array().unwrap().len() <= queued, "{waiting}");
    }

    // Each text reaches Bob exactly once (the watch, or the next sync, sends what waits).
    let (a_dir, b_dir) = (a.path().to_path_buf(), b.path().to_path_buf());
    let bodies = eventually("all 40 texts at Bob", || {
        let (a, b, url) = (a_dir.clone(), b_dir.clone(), url.clone());
        async move {
            ok(&a, &url, &["sync"]).await;
            ok(&b, &url, &["sync"]).await;
            let at_b = json(&b, &url, &["messages", "@alice", "--limit", "1000"]).await;
            let bodies: Vec<String> = at_b
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["body"].as_str().unwrap().to_owned())
                .collect();
            (bodies.len() >= total).then_some(bodies)
        }
    })
    .await;
    let mut sorted = bodies.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), total, "{bodies:?}");
    assert_eq!(bodies.len(), total, "a text arrived twice: {bodies:?}");
    let at_a = json(a.path(), &url, &["messages", "@bob", "--limit", "1000"]).await;
    assert_eq!(at_a.as_array().unwrap().len(), total, "{at_a}");
    watch.stop();
}

/// What `airtext` prints for people holds no control character a terminal would obey.
fn assert_drawn(out: &str, drawn: &str) {
    let obeyed: Vec<char> = out
        .chars()
        .filter(|c| c.is_control() && *c != '\n' && *c != '\t')
        .collect();
    assert!(obeyed.is_empty(), "raw controls {obeyed:?} in {out:?}");
    assert!(out.contains(drawn), "{drawn:?} not in {out:?}");
}

/// A remote sender's ESC, BEL and CR reach the recipient's terminal drawn (`␛`, `␇`, `␍`),
/// in `watch`, `messages`, `conversations` and `search`; `--json` keeps the text exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_senders_control_characters_are_drawn_not_obeyed() {
    let gw = TestGateway::start().await;
    let url = gw.url.clone();
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    ok(a.path(), &url, &["signup", "alice"]).await;
    ok(b.path(), &url, &["signup", "bob"]).await;
    let watch = Watch::start(a.path(), &url, &[]).await;

    let hostile = "hi \u{1b}[2J\u{1b}]0;owned\u{7}\rgotcha\nline two";
    let drawn = "hi ␛[2J␛]0;owned␇␍gotcha␤line two";
    ok(b.path(), &url, &["send", "@alice", hostile]).await;

    let (watch, line) = watch.next_line().await;
    watch.stop();
    assert_drawn(&line, drawn);
    ok(a.path(), &url, &["sync"]).await;
    let listed = ok(a.path(), &url, &["messages", "@bob"]).await;
    assert_drawn(&listed, drawn);
    assert_eq!(listed.lines().count(), 1, "{listed:?}");
    assert_drawn(&ok(a.path(), &url, &["conversations"]).await, drawn);
    assert_drawn(&ok(a.path(), &url, &["search", "gotcha"]).await, drawn);

    let exact = json(a.path(), &url, &["messages", "@bob"]).await;
    assert_eq!(exact[0]["body"], hostile);
}

/// The device token `airtext` keeps in the data directory.
fn token(dir: &Path) -> String {
    let file: Value =
        serde_json::from_slice(&std::fs::read(dir.join("airtext.json")).unwrap()).unwrap();
    file["token"].as_str().unwrap().to_owned()
}

/// The six-digit code the simulator delivered to `to` (asked for by the device in `dir`).
async fn code_sent_to(gateway: &str, dir: &Path, to: &str) -> String {
    let outbox: Value = reqwest::Client::new()
        .get(format!("{gateway}/v1/simulator/outbox"))
        .query(&[("to", to)])
        .bearer_auth(token(dir))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let body = outbox["messages"]
        .as_array()
        .and_then(|m| m.last())
        .and_then(|m| m["body"].as_str())
        .expect("a code was delivered")
        .to_owned();
    body.split(|c: char| !c.is_ascii_digit())
        .find(|run| run.len() == 6)
        .expect("a six-digit code")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_numbers_identities_and_devices_through_the_binary() {
    let gw = TestGateway::start().await;
    let url = gw.url.clone();
    let a = tempfile::tempdir().unwrap();
    ok(a.path(), &url, &["signup", "alice"]).await;

    let me = json(a.path(), &url, &["account", "show"]).await;
    assert_eq!(me["username"], "alice");
    assert_eq!(me["number"], Value::Null);
    assert_eq!(me["devices"][0]["current"], true);
    let shown = ok(a.path(), &url, &["account", "show"]).await;
    assert!(shown.contains("username: @alice"), "{shown}");

    // A number: found, claimed, released.
    let numbers = json(
        a.path(),
        &url,
        &["numbers", "search", "--area-code", "415", "--limit", "3"],
    )
    .await;
    let number = numbers[0].as_str().expect("a number to claim").to_owned();
    let claimed = json(a.path(), &url, &["numbers", "claim", &number]).await;
    assert_eq!(claimed["number"], number.as_str());
    assert_eq!(
        json(a.path(), &url, &["account", "show"]).await["number"],
        number.as_str()
    );
    // A text to an outside phone that the gateway accepted and holds for its carrier is done
    // (exit 0), though its status is still `queued`: only the device's own outbox means "later".
    let sent = json(a.path(), &url, &["send", "+14155550199", "to a phone"]).await;
    assert!(sent["id"].is_string(), "accepted by the gateway: {sent}");
    assert_eq!(
        json(a.path(), &url, &["outbox"]).await,
        serde_json::json!([])
    );
    let released = json(a.path(), &url, &["numbers", "release"]).await;
    assert_eq!(released["number"], number.as_str());
    assert_eq!(
        json(a.path(), &url, &["account", "show"]).await["number"],
        Value::Null
    );
    let out = run(a.path(), &url, &["numbers", "release"]).await;
    assert_eq!(out.status.code(), Some(1), "nothing left to release");

    // An identity: added, listed pending, verified with the code it was sent.
    let pending = json(
        a.path(),
        &url,
        &["identities", "add", "email", "alice@example.org"],
    )
    .await;
    assert_eq!(pending["status"], "pending");
    let listed = json(a.path(), &url, &["identities", "list"]).await;
    let mine = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["value"] == "alice@example.org")
        .expect("the identity is listed");
    assert_eq!(mine["status"], "pending");
    assert_eq!(mine["id"], pending["identity_id"]);
    let code = code_sent_to(&url, a.path(), "alice@example.org").await;
    let out = run(
        a.path(),
        &url,
        &["identities", "verify", "alice@example.org", "000000"],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "a wrong code is refused");
    let verified = json(
        a.path(),
        &url,
        &["identities", "verify", "alice@example.org", &code],
    )
    .await;
    assert_eq!(verified["status"], "verified");
    let listed = json(a.path(), &url, &["identities", "list"]).await;
    assert_eq!(listed[0]["status"], "verified", "{listed}");

    // Devices: a second one signs in, is listed, and is signed out from here.
    let old = tempfile::tempdir().unwrap();
    ok(
        old.path(),
        &url,
        &["login", "alice", "--device-name", "old laptop"],
    )
    .await;
    let devices = json(a.path(), &url, &["devices", "list"]).await;
    let devices = devices.as_array().unwrap();
    assert_eq!(devices.len(), 2);
    let this = devices.iter().find(|d| d["current"] == true).unwrap();
    let other = devices.iter().find(|d| d["current"] == false).unwrap();
    assert_eq!(other["name"], "old laptop");
    let listed = ok(a.path(), &url, &["devices", "list"]).await;
    assert!(
        listed.contains("old laptop") && listed.contains("(this device)"),
        "{listed}"
    );
    let out = run(
        a.path(),
        &url,
        &["devices", "revoke", this["id"].as_str().unwrap()],
    )
    .await;
    assert_eq!(
        out.status.code(),
        Some(1),
        "this device is signed out by logout"
    );
    let other_id = other["id"].as_str().unwrap();
    let revoked = json(
        a.path(),
        &url,
        &["devices", "revoke", &other_id[other_id.len() - 8..]],
    )
    .await;
    assert_eq!(revoked["id"], other_id);
    assert_eq!(
        json(a.path(), &url, &["devices", "list"])
            .await
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let out = run(old.path(), &url, &["sync"]).await;
    assert_eq!(out.status.code(), Some(1), "the revoked device is refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_markers_deleting_and_contact_names_through_the_binary() {
    let gw = TestGateway::start().await;
    let url = gw.url.clone();
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    ok(a.path(), &url, &["signup", "alice"]).await;
    ok(b.path(), &url, &["signup", "bob"]).await;
    ok(b.path(), &url, &["send", "@alice", "first of two"]).await;
    ok(b.path(), &url, &["send", "@alice", "second of two"]).await;

    // No `sync`: reading pulls what is new first.
    let conversations = json(a.path(), &url, &["conversations"]).await;
    assert_eq!(conversations[0]["peer"], "@bob");
    assert_eq!(conversations[0]["unread"], 2);
    let read = json(a.path(), &url, &["read", "@bob"]).await;
    assert_eq!(read["conversation_id"], conversations[0]["id"]);
    assert_ne!(read["up_to"], Value::Null);
    assert_eq!(
        json(a.path(), &url, &["conversations"]).await[0]["unread"],
        0
    );
    let out = run(a.path(), &url, &["read", "@nobody"]).await;
    assert_eq!(out.status.code(), Some(1));

    // Delete by the end of the id `messages` shows.
    let messages = json(a.path(), &url, &["messages", "@bob"]).await;
    let first = messages
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["body"] == "first of two")
        .unwrap();
    let id = first["id"].as_str().unwrap().to_owned();
    let short = &id[id.len() - 8..];
    let listed = ok(a.path(), &url, &["messages", "@bob"]).await;
    assert!(listed.contains(short), "{listed}");
    let deleted = json(a.path(), &url, &["delete", short]).await;
    assert_eq!(deleted["id"], id.as_str());
    let left = json(a.path(), &url, &["messages", "@bob"]).await;
    assert_eq!(left.as_array().unwrap().len(), 1, "{left}");
    assert_eq!(left[0]["body"], "second of two");
    let out = run(a.path(), &url, &["delete", short]).await;
    assert_eq!(out.status.code(), Some(1), "already deleted");
    let out = run(a.path(), &url, &["delete", "not-an-id!"]).await;
    assert_eq!(out.status.code(), Some(1));

    // Contact names: set, listed, shown with the conversation, removed.
    let named = json(
        a.path(),
        &url,
        &["contact", "set-name", "@bob", "Bob Example"],
    )
    .await;
    assert_eq!(named["name"], "Bob Example");
    assert_eq!(named["address"], "@bob");
    let contacts = json(a.path(), &url, &["contact", "list"]).await;
    assert_eq!(contacts[0]["name"], "Bob Example");
    let shown = ok(a.path(), &url, &["conversations"]).await;
    assert!(shown.contains("@bob (Bob Example)"), "{shown}");
    let unnamed = json(a.path(), &url, &["contact", "set-name", "@bob"]).await;
    assert_eq!(unnamed["name"], Value::Null);
}

/// A second device reads what the first one sent without an explicit `sync`; with the
/// gateway stopped, `--offline` (and a plain read) answer from the copy and say how old it is,
/// and commands that need the gateway exit 4.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_device_reads_without_sync_and_offline_reads_the_copy() {
    let mut gw = TestGateway::start().await;
    let url = gw.url.clone();
    let phone = tempfile::tempdir().unwrap();
    let tablet = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    ok(phone.path(), &url, &["signup", "alice"]).await;
    ok(b.path(), &url, &["signup", "bob"]).await;
    ok(
        tablet.path(),
        &url,
        &["login", "alice", "--device-name", "tablet"],
    )
    .await;
    ok(phone.path(), &url, &["send", "@bob", "sent from the phone"]).await;

    let at_tablet = json(tablet.path(), &url, &["messages", "@bob"]).await;
    assert_eq!(at_tablet[0]["body"], "sent from the phone", "{at_tablet}");
    let at_bob = json(b.path(), &url, &["messages", "@alice"]).await;
    assert_eq!(at_bob[0]["body"], "sent from the phone", "{at_bob}");

    gw.stop().await;
    let out = run(tablet.path(), &url, &["--offline", "conversations"]).await;
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("sent from the phone"));
    let note = String::from_utf8_lossy(&out.stderr);
    assert!(
        note.contains("offline: this device's copy, last synced"),
        "{note}"
    );
    let out = run(tablet.path(), &url, &["--json", "messages", "@bob"]).await;
    assert_eq!(out.status.code(), Some(0));
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed[0]["body"], "sent from the phone");
    let note = String::from_utf8_lossy(&out.stderr);
    assert!(note.contains("not up to date"), "{note}");
    assert!(note.contains("last synced"), "{note}");
    let out = run(tablet.path(), &url, &["account", "show"]).await;
    assert_eq!(out.status.code(), Some(4));
}

/// `airtext ARGS` with `env` set over the usual password, and `stdin` written to it.
async fn run_with(
    dir: &Path,
    gateway: &str,
    args: &[&str],
    env: &[(&str, &str)],
    stdin: Option<&str>,
) -> Output {
    let mut command = airtext(dir, gateway, args);
    for (key, value) in env {
        command.env(key, value);
    }
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let input = stdin.map(str::to_owned);
    tokio::task::spawn_blocking(move || {
        let mut child = command.spawn().unwrap();
        if let Some(input) = input {
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(input.as_bytes())
                .unwrap();
        }
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_change_and_account_deletion_through_the_binary() {
    let gw = TestGateway::start().await;
    let url = gw.url.clone();
    let (laptop, tablet, later) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    ok(laptop.path(), &url, &["signup", "alice"]).await;
    ok(tablet.path(), &url, &["login", "alice"]).await;
    let new_password = "a new password, long enough";

    // The new password is required, and a wrong current one changes nothing.
    let out = run(laptop.path(), &url, &["account", "password"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("AIRTEXT_NEW_PASSWORD"));
    let out = run_with(
        laptop.path(),
        &url,
        &["account", "password"],
        &[
            ("AIRTEXT_PASSWORD", "not the password"),
            ("AIRTEXT_NEW_PASSWORD", new_password),
        ],
        None,
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "a wrong current password");
    ok(tablet.path(), &url, &["account", "show"]).await;

    // Changed: this device stays signed in, the tablet is signed out.
    let out = run_with(
        laptop.path(),
        &url,
        &["--json", "account", "password"],
        &[("AIRTEXT_NEW_PASSWORD", new_password)],
        None,
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let changed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(changed["changed"], "password");
    ok(laptop.path(), &url, &["account", "show"]).await;
    let out = run(tablet.path(), &url, &["account", "show"]).await;
    assert_eq!(
        out.status.code(),
        Some(1),
        "the tablet's token stopped working"
    );
    let out = run(later.path(), &url, &["login", "alice"]).await;
    assert_eq!(
        out.status.code(),
        Some(1),
        "the old password no longer signs in"
    );
    let out = run_with(
        later.path(),
        &url,
        &["login", "alice"],
        &[("AIRTEXT_PASSWORD", new_password)],
        None,
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Deletion: refused without --yes, or with a wrong password; nothing is lost then.
    let out = run_with(
        laptop.path(),
        &url,
        &["account", "delete"],
        &[("AIRTEXT_PASSWORD", new_password)],
        None,
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--yes"));
    let out = run_with(
        laptop.path(),
        &url,
        &["account", "delete", "--yes", "--password-stdin"],
        &[],
        Some("not the password\n"),
    )
    .await;
    assert_eq!(
        out.status.code(),
        Some(1),
        "a wrong password deletes nothing"
    );
    ok(later.path(), &url, &["account", "show"]).await;

    let out = run_with(
        laptop.path(),
        &url,
        &["--json", "account", "delete", "--yes", "--password-stdin"],
        &[],
        Some(&format!("{new_password}\n")),
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deleted: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(deleted["deleted"].is_string(), "{deleted}");
    // This device forgot it; the other device's token died with it; nobody signs in as alice.
    let out = run(laptop.path(), &url, &["account", "show"]).await;
    assert_eq!(out.status.code(), Some(1));
    let out = run(later.path(), &url, &["account", "show"]).await;
    assert_eq!(out.status.code(), Some(1));
    let out = run_with(
        tempfile::tempdir().unwrap().path(),
        &url,
        &["login", "alice"],
        &[("AIRTEXT_PASSWORD", new_password)],
        None,
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "the account is gone");
}

/// Two devices of alice: deleting a conversation on one asks for `--yes` first, then the
/// other no longer lists it after its sync, and a third device signed in afterwards never
/// holds a word of it. Bob keeps his copy; alice's contact for bob stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_conversation_through_the_binary() {
    let gw = TestGateway::start().await;
    let url = gw.url.clone();
    let phone = tempfile::tempdir().unwrap();
    let tablet = tempfile::tempdir().unwrap();
    let fresh = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let c = tempfile::tempdir().unwrap();
    ok(phone.path(), &url, &["signup", "alice"]).await;
    ok(b.path(), &url, &["signup", "bob"]).await;
    ok(c.path(), &url, &["signup", "carol"]).await;
    ok(
        tablet.path(),
        &url,
        &["login", "alice", "--device-name", "tablet"],
    )
    .await;
    ok(phone.path(), &url, &["send", "@bob", "the secret to bob"]).await;
    ok(phone.path(), &url, &["send", "@carol", "hello carol"]).await;
    ok(phone.path(), &url, &["contact", "set-name", "@bob", "Bob"]).await;
    let listed = json(tablet.path(), &url, &["conversations"]).await;
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");

    let out = run(phone.path(), &url, &["conversation", "delete", "@bob"]).await;
    assert_eq!(out.status.code(), Some(1));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("every message") && said.contains("--yes"),
        "{said}"
    );
    let out = run(
        phone.path(),
        &url,
        &["conversation", "delete", "@nobody", "--yes"],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));

    let bob_id = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["peer"] == "@bob")
        .unwrap()["id"]
        .clone();
    let deleted = json(
        phone.path(),
        &url,
        &["conversation", "delete", "@bob", "--yes"],
    )
    .await;
    assert_eq!(deleted, serde_json::json!({ "deleted": bob_id }));
    let peers = |listed: &Value| -> Vec<String> {
        listed
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["peer"].as_str().unwrap().to_owned())
            .collect()
    };
    let on_phone = json(phone.path(), &url, &["--offline", "conversations"]).await;
    assert_eq!(peers(&on_phone), vec!["@carol"]);

    // The tablet had it; its next sync takes it away, messages and all.
    ok(tablet.path(), &url, &["sync"]).await;
    let on_tablet = json(tablet.path(), &url, &["--offline", "conversations"]).await;
    assert_eq!(peers(&on_tablet), vec!["@carol"]);
    let out = run(tablet.path(), &url, &["--offline", "messages", "@bob"]).await;
    assert_eq!(out.status.code(), Some(1));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("no conversation with @bob"), "{said}");
    let found = json(tablet.path(), &url, &["--offline", "search", "secret"]).await;
    assert_eq!(found, serde_json::json!([]));

    // A device signed in afterwards never holds the body, not even in its cache file.
    ok(
        fresh.path(),
        &url,
        &["login", "alice", "--device-name", "new"],
    )
    .await;
    let on_fresh = json(fresh.path(), &url, &["conversations"]).await;
    assert_eq!(peers(&on_fresh), vec!["@carol"]);
    let bytes = std::fs::read(cache_file(fresh.path())).unwrap();
    let needle = b"the secret to bob";
    assert!(!bytes.windows(needle.len()).any(|w| w == needle));
    let contacts = json(fresh.path(), &url, &["contact", "list"]).await;
    assert_eq!(contacts[0]["name"], "Bob", "{contacts}");

    // Bob keeps his copy.
    let at_bob = json(b.path(), &url, &["messages", "@alice"]).await;
    assert_eq!(at_bob[0]["body"], "the secret to bob", "{at_bob}");
}

/// Two devices of alice: archiving, muting and naming a conversation on the phone reach the
/// tablet at its next sync; `conversations` hides what is archived unless `--archived`, and
/// a new text from bob brings the conversation back. Bob's own list is untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archiving_muting_and_naming_a_conversation_through_the_binary() {
    let gw = TestGateway::start().await;
    let url = gw.url.clone();
    let phone = tempfile::tempdir().unwrap();
    let tablet = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    ok(phone.path(), &url, &["signup", "alice"]).await;
    ok(b.path(), &url, &["signup", "bob"]).await;
    ok(
        tablet.path(),
        &url,
        &["login", "alice", "--device-name", "tablet"],
    )
    .await;
    ok(b.path(), &url, &["send", "@alice", "hi alice"]).await;
    ok(phone.path(), &url, &["sync"]).await;
    ok(tablet.path(), &url, &["sync"]).await;
    let peers = |listed: &Value| -> Vec<String> {
        listed
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["peer"].as_str().unwrap().to_owned())
            .collect()
    };

    // A peer with no conversation and a name too long are refused.
    let out = run(phone.path(), &url, &["conversation", "archive", "@nobody"]).await;
    assert_eq!(out.status.code(), Some(1));
    let long = "x".repeat(101);
    let out = run(
        phone.path(),
        &url,
        &["conversation", "name", "@bob", long.as_str()],
    )
    .await;
    assert_ne!(out.status.code(), Some(0));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("100 characters"), "{said}");

    let named = json(
        phone.path(),
        &url,
        &["conversation", "name", "@bob", "Bob from work"],
    )
    .await;
    assert_eq!(named["name"], "Bob from work", "{named}");
    assert_eq!(named["peer"], "@bob", "{named}");
    let muted = json(
        phone.path(),
        &url,
        &["conversation", "mute", "@bob", "--for", "always"],
    )
    .await;
    assert_eq!(muted["muted_until"], "9999-12-31T23:59:59Z", "{muted}");
    let archived = json(phone.path(), &url, &["conversation", "archive", "@bob"]).await;
    assert_eq!(archived["archived"], true, "{archived}");
    assert_eq!(archived["name"], "Bob from work", "{archived}");

    let on_phone = json(phone.path(), &url, &["--offline", "conversations"]).await;
    assert!(peers(&on_phone).is_empty(), "{on_phone}");

    // The tablet learns all of it at its next sync.
    ok(tablet.path(), &url, &["sync"]).await;
    let on_tablet = json(tablet.path(), &url, &["--offline", "conversations"]).await;
    assert!(peers(&on_tablet).is_empty(), "{on_tablet}");
    let all = json(
        tablet.path(),
        &url,
        &["--offline", "conversations", "--archived"],
    )
    .await;
    assert_eq!(peers(&all), vec!["@bob"]);
    assert_eq!(all[0]["conversation_name"], "Bob from work", "{all}");
    assert_eq!(all[0]["archived"], true, "{all}");
    let text = ok(
        tablet.path(),
        &url,
        &["--offline", "conversations", "--archived"],
    )
    .await;
    assert!(
        text.contains("Bob from work") && text.contains("archived") && text.contains("muted"),
        "{text}"
    );

    // Unmute and clear the name on the tablet; the phone sees it.
    let unmuted = json(tablet.path(), &url, &["conversation", "unmute", "@bob"]).await;
    assert_eq!(unmuted["muted_until"], Value::Null, "{unmuted}");
    let unnamed = json(tablet.path(), &url, &["conversation", "name", "@bob", ""]).await;
    assert_eq!(unnamed["name"], Value::Null, "{unnamed}");
    ok(phone.path(), &url, &["sync"]).await;
    let all = json(
        phone.path(),
        &url,
        &["--offline", "conversations", "--archived"],
    )
    .await;
    assert_eq!(all[0]["conversation_name"], Value::Null, "{all}");
    assert_eq!(all[0]["muted_until"], Value::Null, "{all}");

    // A new text from bob brings it back on both devices.
    ok(b.path(), &url, &["send", "@alice", "are you there?"]).await;
    for device in [phone.path(), tablet.path()] {
        let listed = json(device, &url, &["conversations"]).await;
        assert_eq!(peers(&listed), vec!["@bob"], "{listed}");
        assert_eq!(listed[0]["archived"], false, "{listed}");
    }
    let unarchive = json(phone.path(), &url, &["conversation", "unarchive", "@bob"]).await;
    assert_eq!(unarchive["archived"], false, "{unarchive}");

    // Bob's list is his own.
    let at_bob = json(b.path(), &url, &["conversations"]).await;
    assert_eq!(at_bob[0]["archived"], false, "{at_bob}");
    assert_eq!(at_bob[0]["conversation_name"], Value::Null, "{at_bob}");
}

/// Blocking, unblocking and deleting a contact, and removing an identity, through the binary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_deleting_contacts_and_removing_identities_through_the_binary() {
    let gw = TestGateway::start().await;
    let url = gw.url.clone();
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    ok(a.path(), &url, &["signup", "alice"]).await;
    ok(b.path(), &url, &["signup", "bob"]).await;

    let blocked = json(a.path(), &url, &["contact", "block", "@bob"]).await;
    assert_eq!(blocked["address"], "@bob");
    assert_eq!(blocked["blocked"], true);
    // Naming keeps the block.
    let named = json(a.path(), &url, &["contact", "set-name", "@bob", "Bob"]).await;
    assert_eq!(named["blocked"], true);
    let shown = ok(a.path(), &url, &["contact", "list"]).await;
    assert!(shown.contains("blocked"), "{shown}");
    // Bob's side sees a normal delivery; nothing reaches alice.
    let sent = json(b.path(), &url, &["send", "@alice", "you will not see this"]).await;
    assert_eq!(sent["status"], "delivered");
    assert_eq!(
        json(a.path(), &url, &["conversations"]).await,
        serde_json::json!([])
    );

    let unblocked = json(a.path(), &url, &["contact", "unblock", "@bob"]).await;
    assert_eq!(unblocked["blocked"], false);
    assert_eq!(unblocked["name"], "Bob");
    ok(b.path(), &url, &["send", "@alice", "now you do"]).await;
    let messages = json(a.path(), &url, &["messages", "@bob"]).await;
    let bodies: Vec<&str> = messages
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["body"].as_str().unwrap())
        .collect();
    assert_eq!(bodies, ["now you do"]);

    let deleted = json(a.path(), &url, &["contact", "delete", "@bob"]).await;
    assert_eq!(deleted["address"], "@bob");
    assert_eq!(
        json(a.path(), &url, &["contact", "list"]).await,
        serde_json::json!([])
    );
    let out = run(a.path(), &url, &["contact", "delete", "@bob"]).await;
    assert_eq!(out.status.code(), Some(1), "nothing left to delete");

    // An identity, removed by its value.
    ok(
        a.path(),
        &url,
        &["identities", "add", "email", "alice@example.org"],
    )
    .await;
    let removed = json(
        a.path(),
        &url,
        &["identities", "remove", "Alice@Example.org"],
    )
    .await;
    assert_eq!(removed["value"], "alice@example.org");
    assert_eq!(
        json(a.path(), &url, &["identities", "list"]).await,
        serde_json::json!([])
    );
    let out = run(
        a.path(),
        &url,
        &["identities", "remove", "alice@example.org"],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
}
