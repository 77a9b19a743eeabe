//! How the client commands print answers for a person (`--json` prints them as they are):
//! [`print_response`], with its lists, sizes and times.

use qanat_client::control::{MessageOut, Response, ThreadOut};

use crate::client_cmd::{Output, safety_rows};

pub(crate) fn print_response(resp: &Response, out: Output) {
    if out.json {
        match serde_json::to_string(resp) {
            Ok(line) => println!("{line}"),
            Err(e) => eprintln!("cannot encode the answer: {e}"),
        }
        return;
    }
    match resp {
        // Reported by the caller, on standard error.
        Response::Error { .. } => {}
        Response::Ok | Response::Unlocked => println!("done"),
        Response::State { profile, .. } => println!("profile: {profile}"),
        Response::Invitation { link, qr, expires_at_ms } => {
            println!("{qr}");
            println!("{link}");
            println!();
            let now = qanat_pki::UnixMillis::from_system_time(std::time::SystemTime::now()).as_millis();
            let hours = expires_at_ms.saturating_sub(now).div_ceil(3_600_000);
            println!(
                "Give this one-time link (or the QR code) to your contact, who runs \
                 `qanat accept --name YOURNAME LINK`. It expires in {hours} h."
            );
        }
        Response::Sent { id } => println!("queued message {id}"),
        Response::Estimate { bucket, packets, recipients, allowed, limit, hidden, .. } => {
            if *allowed {
                println!(
                    "about {} (up to {}): {packets} packets to each of {recipients} (sent as {});                      in your normal slots, so nothing more shows and no extra data",
                    crate::client_cmd::duration(hidden.secs_low),
                    crate::client_cmd::duration(hidden.secs_high),
                    bytes(*bucket)
                );
            } else {
                println!("too large: the limit here is {}", bytes(*limit));
            }
        }
        Response::Attach { id } => println!("upload {id}"),
        Response::FileData { data, total } => {
            println!("{} of {} (base64 in --json)", data.len(), bytes(*total))
        }
        Response::Transfers { list } => {
            if list.is_empty() {
                println!("no files");
            }
            for f in list {
                let pct = (f.done_bytes * 100).checked_div(f.total_bytes).unwrap_or(100).min(100);
                let who = if f.recipients[1] > 0 {
                    format!(" {}/{} have it", f.recipients[0], f.recipients[1])
                } else {
                    String::new()
                };
                println!("{}  {:<9} {pct:>3}%  {} ({}){who}", f.transfer, f.state, f.name, bytes(f.size));
            }
        }
        Response::Status {
            traffic,
            running,
            network,
            undelivered,
            sent,
            idle_bytes_per_day,
            link,
            input,
            files,
        } => {
            println!(
                "client:       {}",
                if *running { "running" } else { "not running (start `qanat run`)" }
            );
            println!("directory:    {}", if *network { "yes" } else { "not yet" });
            match idle_bytes_per_day {
                Some([up, down]) => println!(
                    "traffic:      {traffic} (about {} up, {} down per day while idle)",
                    bytes(*up),
                    bytes(*down)
                ),
                None => println!("traffic:      {traffic} (cost known once the client has the directory)"),
            }
            println!("undelivered:  {undelivered}");
            println!("packets sent: {} real, {} acknowledgements, {} cover", sent[0], sent[1], sent[2]);
            println!(
                "received:     {} malformed, {} rejected, {} duplicates, {} deferred; {} acknowledgements dropped",
                input.malformed, input.rejected, input.duplicates, input.deferred, input.acks_dropped
            );
            println!(
                "partial:      {} messages held ({})",
                input.partial_messages,
                bytes(input.partial_bytes)
            );
            if files.sent + files.stored + files.refused + files.offers_refused > 0 {
                println!(
                    "files:        {} packets sent, {} answers; {} shards kept, {} again, {} refused; {} files received, {} corrupt, {} offers refused",
                    files.sent,
                    files.answers,
                    files.stored,
                    files.duplicate,
                    files.refused,
                    files.received,
                    files.corrupt,
                    files.offers_refused
                );
            }
            if input.failed > 0 {
                println!("failed:       {} items refused on an error (the log names each)", input.failed);
            }
            if let Some(l) = link {
                println!(
                    "link:         {} frames out, {} in ({} bytes each)",
                    l.frames_out, l.frames_in, l.frame_bytes
                );
            }
        }
        Response::Threads { list } => print_threads(list),
        Response::Messages { list } => print_messages(list),
        Response::Members { list, invited } => {
            if list.is_empty() {
                println!("no other members");
            }
            for m in list {
                println!("{m}");
            }
            for m in invited {
                println!("{m}  (invited, has not joined)");
            }
        }
        Response::GroupInvitations { list } => {
            if list.is_empty() {
                println!("no group invitations");
            }
            for i in list {
                println!("{}  from {}: {:?}", i.id, i.from, i.group);
            }
        }
        Response::Joining { name } => {
            println!("joining group {name}; you are a member once the inviter's client answers")
        }
        Response::Delivery { state } => println!("{state}"),
        Response::Settings { traffic, language, lock_timeout_secs, max_file_bytes, auto_accept_bytes } => {
            println!("traffic:      {traffic}");
            println!("language:     {}", language.as_deref().unwrap_or("(the browser's)"));
            println!("lock after:   {lock_timeout_secs} s without you (in the app)");
            println!(
                "files:        up to {}; accepted without asking up to {}",
                bytes(*max_file_bytes),
                bytes(*auto_accept_bytes)
            );
        }
        Response::Network {
            directory_epoch,
            epoch_secs,
            layers,
            mean_delay_ms,
            traffic,
            sent,
            standard,
            metered,
            link,
        } => {
            let Some(epoch) = directory_epoch else {
                println!(
                    "no network directory yet (start `qanat run` and wait until it reaches the network)"
                );
                return;
            };
            if let Some(l) = link {
                println!("gateway:      {}", if l.connected { "connected" } else { "not connected" });
                println!("today:        {} up, {} down", bytes(l.today[0]), bytes(l.today[1]));
            }
            println!(
                "directory:    epoch {epoch} ({} s each), {} mix layers, {} ms mean delay per mix",
                epoch_secs.unwrap_or(0),
                layers.unwrap_or(0),
                mean_delay_ms.unwrap_or(0)
            );
            println!("sent:         {} real, {} acknowledgements, {} cover", sent[0], sent[1], sent[2]);
            for (name, c) in [("standard", standard), ("metered", metered)] {
                let Some(c) = c else { continue };
                let mark = if *traffic == name { "*" } else { " " };
                println!(
                    "{mark}{name:9}    {} up and {} down per day, a message takes about {:.1} s",
                    bytes(c.bytes_per_day[0]),
                    bytes(c.bytes_per_day[1]),
                    c.expected_delay_ms as f64 / 1000.0
                );
            }
        }
        Response::SafetyCode { code, verified, .. } => {
            for row in safety_rows(code) {
                println!("{row}");
            }
            println!("{}", if *verified { "verified" } else { "not verified" });
        }
        Response::Event { text, latency_ms, .. } => match latency_ms {
            Some(l) => println!("{text}  ({l} ms)"),
            None => println!("{text}"),
        },
    }
}

fn print_threads(list: &[ThreadOut]) {
    if list.is_empty() {
        println!(
            "no contacts yet: `qanat invite --name NAME` makes an invitation, \
             `qanat accept --name NAME LINK` accepts one"
        );
        return;
    }
    let w = list.iter().map(|t| t.name.chars().count()).max().unwrap_or(0).max(4);
    println!("{:w$}  {:7}  {:8}  {:6}  {:8}  MEMBERS", "NAME", "KIND", "STATE", "UNREAD", "VERIFIED");
    for t in list {
        let kind = if t.group { "group" } else { "contact" };
        let verified = match (t.group, t.verified) {
            (true, _) => "-",
            (false, true) => "yes",
            (false, false) => "no",
        };
        println!(
            "{:w$}  {kind:7}  {:8}  {:6}  {verified:8}  {}",
            t.name,
            t.state,
            t.unread,
            t.members.join(", ")
        );
    }
}

fn print_messages(list: &[MessageOut]) {
    if list.is_empty() {
        println!("no messages");
        return;
    }
    for m in list {
        let who = if m.sender == m.thread { m.thread.clone() } else { format!("{}/{}", m.thread, m.sender) };
        let tail = match &m.state {
            Some(state) => format!("  [{state}]"),
            None => format!("  ({} ms)", m.at_ms.saturating_sub(m.sent_at_ms)),
        };
        let file = m
            .file
            .as_ref()
            .map(|f| {
                format!(
                    "[{} {} ({}), {}: `qanat save {}`] ",
                    f.kind,
                    f.name,
                    bytes(f.size),
                    f.state,
                    f.transfer
                )
            })
            .unwrap_or_default();
        println!("{}  {who}: {file}{}{tail}", utc(m.sent_at_ms), m.text);
    }
}

/// A byte count for people.
pub(crate) fn bytes(n: u64) -> String {
    let n = n as f64;
    if n >= 1e9 {
        format!("{:.1} GB", n / 1e9)
    } else if n >= 1e6 {
        format!("{:.1} MB", n / 1e6)
    } else if n >= 1e3 {
        format!("{:.1} kB", n / 1e3)
    } else {
        format!("{n} B")
    }
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) of a Unix time in milliseconds.
pub(crate) fn utc(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Days to a civil date (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_civil_utc() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(1_767_225_600_000), "2026-01-01 00:00:00");
        assert_eq!(utc(951_827_696_000), "2000-02-29 12:34:56");
    }

    #[test]
    fn byte_counts_read_well() {
        assert_eq!(bytes(999), "999 B");
        assert_eq!(bytes(1_500), "1.5 kB");
        assert_eq!(bytes(180_000_000), "180.0 MB");
    }
}
