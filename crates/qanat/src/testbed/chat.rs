//! The chat the testbed measures: real `qanat run` clients driven through their control
//! sockets (a Unix socket in the profile directory: reachable from any network namespace), one
//! watch stream per client, and the count of every message at every recipient.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use qanat_client::control::{Request, Response};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader, Lines};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// A connection to a running client's control socket.
pub(crate) struct Control {
    lines: Lines<BufReader<OwnedReadHalf>>,
    w: OwnedWriteHalf,
}

impl Control {
    /// Connects to the client of `home` once its socket answers, within `limit`.
    pub(crate) async fn connect(home: &Path, limit: Duration) -> Result<Self> {
        let end = Instant::now() + limit;
        let path = home.join("control.sock");
        loop {
            match UnixStream::connect(&path).await {
                Ok(s) => {
                    let (r, w) = s.into_split();
                    return Ok(Self { lines: BufReader::new(r).lines(), w });
                }
                Err(e) if Instant::now() >= end => {
                    return Err(e).with_context(|| format!("no client answers at {}", path.display()));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }

    async fn send(&mut self, req: &Request) -> Result<()> {
        let mut line = serde_json::to_vec(req)?;
        line.push(b'\n');
        self.w.write_all(&line).await.context("the client closed its control socket")
    }

    async fn next(&mut self) -> Result<Response> {
        let line = self.lines.next_line().await?.context("the client closed its control socket")?;
        serde_json::from_str(&line).context("an unreadable answer from the client")
    }

    /// One request and its answer (within 30 s).
    pub(crate) async fn call(&mut self, req: &Request) -> Result<Response> {
        tokio::time::timeout(Duration::from_secs(30), async {
            self.send(req).await?;
            self.next().await
        })
        .await
        .context("the client did not answer within 30 s")?
    }

    /// Turns this connection into the client's event stream: each event's text goes to `tx`
    /// with the client's index and the time it arrived.
    pub(crate) fn watch(mut self, who: usize, tx: mpsc::UnboundedSender<(usize, Instant, String)>) {
        tokio::spawn(async move {
            if self.send(&Request::Watch).await.is_err() {
                return;
            }
            while let Ok(Response::Event { text, .. }) = self.next().await {
                if tx.send((who, Instant::now(), text)).is_err() {
                    return;
                }
            }
        });
    }
}

/// Waits until `c`'s client has the network's directory.
pub(crate) async fn wait_directory(c: &mut Control, limit: Duration) -> Result<()> {
    let end = Instant::now() + limit;
    loop {
        if let Response::Status { network: true, .. } = c.call(&Request::Status).await? {
            return Ok(());
        }
        if Instant::now() >= end {
            bail!("no directory after {} s", limit.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The events every client has shown, and what arrives.
pub(crate) struct Events {
    rx: mpsc::UnboundedReceiver<(usize, Instant, String)>,
    /// (client, time, text), in arrival order.
    pub(crate) seen: Vec<(usize, Instant, String)>,
}

impl Events {
    pub(crate) fn new() -> (Self, mpsc::UnboundedSender<(usize, Instant, String)>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Self { rx, seen: Vec::new() }, tx)
    }

    fn pump(&mut self) {
        while let Ok(e) = self.rx.try_recv() {
            self.seen.push(e);
        }
    }

    /// Waits until `done(seen)` or `limit`; returns whether it was done.
    pub(crate) async fn until(
        &mut self,
        limit: Duration,
        mut done: impl FnMut(&[(usize, Instant, String)]) -> bool,
    ) -> bool {
        let end = Instant::now() + limit;
        loop {
            self.pump();
            if done(&self.seen) {
                return true;
            }
            if Instant::now() >= end {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Whether client `who` showed the event `text`.
    pub(crate) fn has(seen: &[(usize, Instant, String)], who: usize, text: &str) -> bool {
        seen.iter().any(|(w, _, t)| *w == who && t == text)
    }
}

/// One message of the chat.
#[derive(Debug, Clone)]
pub(crate) struct Message {
    pub(crate) from: usize,
    /// The contact or group, as the sender calls it.
    pub(crate) to: String,
    /// The clients that must get it.
    pub(crate) recipients: Vec<usize>,
    /// Unique in the run.
    pub(crate) text: String,
    /// When the send request left.
    pub(crate) sent: Option<Instant>,
}

/// Per message and recipient: how often it arrived, and its latency the first time.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    pub(crate) arrivals: BTreeMap<(usize, usize), (u32, Duration)>,
}

impl Tally {
    /// Counts the message events in `seen` (their text is `[thread] text` or
    /// `[group/sender] text`).
    pub(crate) fn count(messages: &[Message], seen: &[(usize, Instant, String)]) -> Self {
        let by_text: BTreeMap<&str, usize> =
            messages.iter().enumerate().map(|(i, m)| (m.text.as_str(), i)).collect();
        let mut t = Self::default();
        for (who, at, text) in seen {
            let Some((_, body)) = text.split_once("] ") else { continue };
            let Some(&i) = by_text.get(body) else { continue };
            let latency = messages[i].sent.map(|s| at.saturating_duration_since(s)).unwrap_or_default();
            let e = t.arrivals.entry((i, *who)).or_insert((0, latency));
            e.0 += 1;
        }
        t
    }

    /// Whether every recipient of every message got it at least once.
    pub(crate) fn complete(&self, messages: &[Message]) -> bool {
        self.missing(messages) == 0
    }

    /// Deliveries expected and not seen.
    pub(crate) fn missing(&self, messages: &[Message]) -> usize {
        messages
            .iter()
            .enumerate()
            .flat_map(|(i, m)| m.recipients.iter().map(move |r| (i, *r)))
            .filter(|k| !self.arrivals.contains_key(k))
            .count()
    }

    /// Deliveries seen more than once, or at a client that is not a recipient.
    pub(crate) fn wrong(&self, messages: &[Message]) -> usize {
        self.arrivals
            .iter()
            .filter(|((i, who), (n, _))| *n > 1 || !messages[*i].recipients.contains(who))
            .count()
    }

    /// The latencies of first arrivals, sorted.
    pub(crate) fn latencies(&self) -> Vec<Duration> {
        let mut l: Vec<Duration> = self.arrivals.values().map(|(_, d)| *d).collect();
        l.sort();
        l
    }
}

/// The `q`-quantile of sorted `xs` (nearest rank).
pub(crate) fn quantile(xs: &[Duration], q: f64) -> Duration {
    if xs.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((q * xs.len() as f64).ceil() as usize).clamp(1, xs.len());
    xs[rank - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_quantiles() {
        let xs: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(quantile(&xs, 0.5), Duration::from_millis(50));
        assert_eq!(quantile(&xs, 0.99), Duration::from_millis(99));
        assert_eq!(quantile(&xs[..1], 0.99), Duration::from_millis(1));
        assert_eq!(quantile(&[], 0.5), Duration::ZERO);
    }

    #[test]
    fn the_tally_finds_missing_duplicate_and_misdelivered_messages() {
        let t0 = Instant::now();
        let m = |from, to: &str, recipients: Vec<usize>, text: &str| Message {
            from,
            to: to.into(),
            recipients,
            text: text.into(),
            sent: Some(t0),
        };
        let messages = vec![m(0, "bob", vec![1], "tb0 x"), m(1, "team", vec![0, 2], "tb1 x")];
        let at = t0 + Duration::from_millis(700);
        let seen = vec![
            (1, at, "[alice] tb0 x".to_owned()),
            (0, at, "[team/bob] tb1 x".to_owned()),
            (0, at, "contact bob is ready".to_owned()),
        ];
        let t = Tally::count(&messages, &seen);
        assert_eq!((t.missing(&messages), t.wrong(&messages)), (1, 0));
        assert!(!t.complete(&messages));
        assert_eq!(t.latencies(), vec![Duration::from_millis(700); 2]);
        let mut more = seen.clone();
        more.push((2, at, "[team/bob] tb1 x".to_owned()));
        more.push((2, at, "[team/bob] tb1 x".to_owned()));
        more.push((2, at, "[alice] tb0 x".to_owned()));
        let t = Tally::count(&messages, &more);
        assert!(t.complete(&messages));
        assert_eq!(t.wrong(&messages), 2);
    }
}
