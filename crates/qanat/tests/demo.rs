//! The README's first command: `qanat demo` runs a whole network and two users in one process,
//! and exits 0 only when every message arrived.

use std::process::Command;

#[test]
fn the_demo_delivers_every_message() {
    let out = Command::new(env!("CARGO_BIN_EXE_qanat"))
        .args(["demo", "--messages", "6", "--gap-ms", "300"])
        .output()
        .expect("run qanat demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "demo failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("demo: 6/6 messages delivered, p50 "), "{stdout}");
    assert!(stdout.matches(" ms\n").count() >= 6, "{stdout}");
}

/// `qanat demo --ui --no-browser`: after the exchange, each user's app is served with the
/// profile the demo made; the printed passphrase opens it and the conversation is there; SIGTERM
/// stops everything cleanly.
#[test]
fn the_demo_serves_both_users_apps() {
    use std::io::{BufRead as _, Read as _, Write as _};
    use std::process::Stdio;
    use std::time::{Duration, Instant};

    let mut child = Command::new(env!("CARGO_BIN_EXE_qanat"))
        .args(["demo", "--messages", "2", "--gap-ms", "300", "--ui", "--no-browser"])
        .env("QANAT_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run qanat demo --ui");
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    // Killed by its PID if the test fails before it is stopped below.
    struct Guard(std::process::Child);
    impl Drop for Guard {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = Guard(child);
    let mut apps = Vec::new();
    let mut said = Vec::new();
    while apps.len() < 2 {
        let line = lines.next().expect("the demo ended before serving its apps").unwrap();
        if let Some(url) = line.split_whitespace().find(|w| w.starts_with("http://127.0.0.1:")) {
            let pass = line.rsplit('"').nth(1).unwrap().to_owned();
            apps.push((url.to_owned(), pass));
        }
        said.push(line);
    }
    // The exchange came first (its summary follows the apps, at the end).
    assert_eq!(said.iter().filter(|l| l.contains(" <- ")).count(), 2, "{said:?}");
    std::thread::spawn(move || for _ in lines.map_while(Result::ok) {});

    let http = |port: u16, method: &str, path: &str, head: &[(&str, &str)], body: &str| {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
        for (k, v) in head {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
        s.write_all(req.as_bytes()).unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    };
    for (url, pass) in &apps {
        let rest = url.trim_start_matches("http://127.0.0.1:");
        let (port, path) = rest.split_at(rest.find('/').unwrap());
        let port: u16 = port.parse().unwrap();
        let answer =
            http(port, "GET", path, &[("Sec-Fetch-Site", "none"), ("Sec-Fetch-Dest", "document")], "");
        let cookie = answer
            .lines()
            .find_map(|l| l.strip_prefix("set-cookie: ").or_else(|| l.strip_prefix("Set-Cookie: ")))
            .unwrap_or_else(|| panic!("no cookie: {answer}"))
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        let origin = format!("http://127.0.0.1:{port}");
        let call = |key: Option<&str>, body: &str| {
            let mut head = vec![
                ("Origin", origin.as_str()),
                ("Sec-Fetch-Site", "same-origin"),
                ("Content-Type", "application/json"),
                ("Cookie", cookie.as_str()),
            ];
            if let Some(k) = key {
                head.push(("X-Qanat-Key", k));
            }
            let out = http(port, "POST", "/api/call", &head, body);
            let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
            serde_json::from_str::<serde_json::Value>(&body).unwrap_or_else(|_| panic!("{out}"))
        };
        assert_eq!(call(None, r#"{"cmd":"app_state"}"#)["profile"], "closed");
        let unlocked = call(None, &format!(r#"{{"cmd":"unlock","passphrase":"{pass}"}}"#));
        let key = unlocked["key"].as_str().unwrap_or_else(|| panic!("{unlocked}")).to_owned();
        let threads = call(Some(&key), r#"{"cmd":"contacts"}"#);
        assert_eq!(threads["list"][0]["state"], "active", "{threads}");
        assert!(
            threads["list"][0]["last"]["text"].as_str().is_some_and(|t| t.starts_with("message 1 from")),
            "{threads}"
        );
    }
    rustix::process::kill_process(rustix::process::Pid::from_child(&child.0), rustix::process::Signal::TERM)
        .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.0.try_wait().unwrap() {
            break st;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "the demo did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "{status}");
}
