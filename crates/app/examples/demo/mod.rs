//! The preview's fake backend and its demo data, shared by `preview.rs` (the page to look at)
//! and `screenshots.rs` (the page photographed): a `Backend` like the tests' fakes, nothing of
//! the real server. See `preview.rs` for what the demo world holds.

mod media;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use qanat_app::Backend;
use serde_json::{Value, json};
use tokio::sync::broadcast;
use zeroize::Zeroizing;

pub(crate) const MIN: u64 = 60_000;
pub(crate) const HOUR: u64 = 60 * MIN;

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// A conversation of the demo world.
pub(crate) struct Thread {
    pub(crate) name: String,
    pub(crate) group: bool,
    pub(crate) state: &'static str,
    pub(crate) members: Vec<String>,
    /// Contacts invited into the group who have not said yes.
    pub(crate) invited: Vec<String>,
    pub(crate) unread: usize,
    pub(crate) expires_at_ms: Option<u64>,
    pub(crate) made_ms: u64,
    pub(crate) messages: Vec<Value>,
}

/// Everything the demo backend knows.
pub(crate) struct World {
    pub(crate) profile: &'static str,
    pub(crate) lock_timeout_secs: u32,
    pub(crate) language: Option<String>,
    pub(crate) traffic: String,
    pub(crate) threads: Vec<Thread>,
    pub(crate) invitations: Vec<Value>,
    pub(crate) next_id: u64,
    /// Safety codes marked verified: (thread, member) → the code marked.
    pub(crate) marks: Vec<((String, Option<String>), String)>,
    /// The bytes of file messages that have them (the others are a pattern): message id → bytes.
    pub(crate) files: Vec<(String, Vec<u8>)>,
    /// Files being handed over by `attach_part`.
    uploads: Vec<Upload>,
    /// How many bytes a moving transfer gains each second: message id → bytes.
    steps: Vec<(String, u64)>,
}

/// A file the page is handing over (`attach_begin` … `attach_commit`).
struct Upload {
    id: String,
    to: String,
    name: String,
    mime: String,
    kind: String,
    size: u64,
    duration_ms: Option<u64>,
    data: Vec<u8>,
}

/// A message's `file` (docs/ATTACHMENTS.md §3.13, as the contract has it).
#[allow(clippy::too_many_arguments)]
pub(crate) fn file(
    name: &str,
    mime: &str,
    kind: &str,
    size: u64,
    duration_ms: Option<u64>,
    state: &str,
    done: u64,
    step: u64,
) -> Value {
    let moving = state == "sending" || state == "receiving";
    json!({
        "transfer": format!("{:032x}", size.wrapping_mul(0x9e37_79b9_7f4a_7c15)), "name": name, "mime": mime,
        "kind": kind, "size": size, "duration_ms": duration_ms, "state": state, "done_bytes": done,
        "total_bytes": size, "rate_bps": if moving { step as f64 } else { 0.0 },
        "eta_secs": moving.then(|| (size - done) / step.max(1)), "fast": false,
    })
}

/// A file message: `message` with its `file`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn file_message(
    id: u64,
    thread: &str,
    sender: &str,
    caption: &str,
    at_ms: u64,
    state: Option<&str>,
    delivered: [u32; 2],
    file: Value,
) -> Value {
    let mut m = message(id, thread, sender, caption, at_ms, state, delivered);
    m["file"] = file;
    m
}

/// A made-up safety code for `thread` and `member`: 60 digits, stable for the pair.
fn safety_code(thread: &str, member: Option<&str>) -> String {
    let mut x: u64 = 0xcbf2_9ce4_8422_2325;
    for b in thread.bytes().chain(member.unwrap_or("").bytes()) {
        x = (x ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    (0..60)
        .map(|_| {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            char::from(b'0' + ((x >> 33) % 10) as u8)
        })
        .collect()
}

#[derive(Clone)]
/// The fake backend.
pub(crate) struct Demo {
    world: Arc<Mutex<World>>,
    events: broadcast::Sender<String>,
    started: Instant,
    /// Whether the task that moves transfers on runs.
    ticking: Arc<AtomicBool>,
}

/// A message as `history` answers it.
pub(crate) fn message(
    id: u64,
    thread: &str,
    sender: &str,
    text: &str,
    at_ms: u64,
    state: Option<&str>,
    delivered: [u32; 2],
) -> Value {
    let mut m = json!({
        "id": format!("{id:016x}"), "thread": thread, "sender": sender, "text": text,
        "sent_at_ms": at_ms.saturating_sub(4000), "at_ms": at_ms, "state": state,
    });
    if state.is_some() {
        m["delivered"] = json!(delivered);
    }
    m
}

/// The demo data (`first`: no profile yet, no conversations).
pub(crate) fn demo_world(first: bool, language: Option<String>) -> World {
    let now = now_ms();
    let mut id = 1;
    let mut next = || {
        id += 1;
        id
    };
    let amina = vec![
        message(next(), "Amina", "Amina", "Did the documents reach you?", now - 26 * HOUR, None, [0, 0]),
        message(
            next(),
            "Amina",
            "me",
            "Yes, all three. Reading them tonight.",
            now - 25 * HOUR,
            Some("delivered"),
            [1, 1],
        ),
        message(
            next(),
            "Amina",
            "Amina",
            "Careful with the second one: the names in it are real.",
            now - 3 * HOUR,
            None,
            [0, 0],
        ),
        message(
            next(),
            "Amina",
            "me",
            "Understood. I will redact before sharing.",
            now - 2 * HOUR,
            Some("delivered"),
            [1, 1],
        ),
        message(next(), "Amina", "me", "Can we meet on Thursday?", now - 20 * MIN, Some("sent"), [0, 1]),
        message(
            next(),
            "Amina",
            "Amina",
            "Thursday works. Same place as last time?\nI can bring the recorder.",
            now - 12 * MIN,
            None,
            [0, 0],
        ),
        message(next(), "Amina", "me", "Yes. 10:00.", now - MIN, Some("queued"), [0, 1]),
    ];
    let salma = vec![
        message(next(), "سلمى", "سلمى", "وصلت الملفات، شكرًا لك.", now - 50 * HOUR, None, [0, 0]),
        message(
            next(),
            "سلمى",
            "me",
            "Great — tell me when you have read them.",
            now - 49 * HOUR,
            Some("delivered"),
            [1, 1],
        ),
        message(
            next(),
            "سلمى",
            "سلمى",
            "قرأت نصفها. سأكتب لك غدًا (Qanat 2.0).",
            now - 5 * HOUR,
            None,
            [0, 0],
        ),
    ];
    // Files from and to سلمى, one in each state (the voice note plays, the image shows).
    let map = media::png(360, 240);
    let voice = media::wav(6);
    let (map_id, voice_id) = (next(), next());
    let (report, photos, notes, roads, papers) = (next(), next(), next(), next(), next());
    let salma_files = vec![
        file_message(
            map_id,
            "سلمى",
            "سلمى",
            "الحاجز على الطريق الشمالي",
            now - 4 * HOUR - 40 * MIN,
            None,
            [0, 0],
            file(
                "حاجز-الطريق.png",
                "image/png",
                "image",
                map.len() as u64,
                None,
                "received",
                map.len() as u64,
                1,
            ),
        ),
        file_message(
            voice_id,
            "سلمى",
            "سلمى",
            "",
            now - 4 * HOUR - 30 * MIN,
            None,
            [0, 0],
            file(
                "voice-0412.wav",
                "audio/wav",
                "voice",
                voice.len() as u64,
                Some(6000),
                "received",
                voice.len() as u64,
                1,
            ),
        ),
        file_message(
            report,
            "سلمى",
            "me",
            "",
            now - 3 * HOUR,
            Some("sent"),
            [0, 1],
            file("report-final.pdf", "application/pdf", "file", 1_258_291, None, "sending", 515_899, 1_398),
        ),
        file_message(
            photos,
            "سلمى",
            "me",
            "",
            now - 2 * HOUR,
            Some("sent"),
            [0, 1],
            file("photos-march.zip", "application/zip", "file", 2_411_724, None, "cancelled", 380_000, 1),
        ),
        file_message(
            notes,
            "سلمى",
            "سلمى",
            "",
            now - 90 * MIN,
            None,
            [0, 0],
            file(
                "interview-notes.docx",
                "application/octet-stream",
                "file",
                88_310,
                None,
                "failed",
                41_000,
                1,
            ),
        ),
        file_message(
            roads,
            "سلمى",
            "سلمى",
            "",
            now - 40 * MIN,
            None,
            [0, 0],
            file("خريطة-الطرق.pdf", "application/pdf", "file", 655_360, None, "receiving", 78_643, 728),
        ),
        file_message(
            papers,
            "سلمى",
            "سلمى",
            "كل الوثائق، مع الصور",
            now - 20 * MIN,
            None,
            [0, 0],
            file("الوثائق-كاملة.zip", "application/zip", "file", 3_250_585, None, "offered", 0, 1),
        ),
    ];
    let salma: Vec<Value> = salma.into_iter().chain(salma_files).collect();
    let files = vec![(format!("{map_id:016x}"), map), (format!("{voice_id:016x}"), voice)];
    let steps = vec![(format!("{report:016x}"), 1_398), (format!("{roads:016x}"), 728)];
    // An "image" whose bytes are SVG: the page does not show it (it saves it, if asked).
    let svg_id = next();
    let svg = br#"<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>"#.to_vec();
    let team = vec![
        file_message(
            svg_id,
            "Field team",
            "Jules",
            "",
            now - 7 * HOUR,
            None,
            [0, 0],
            file(
                "diagram.png",
                "image/png",
                "image",
                svg.len() as u64,
                None,
                "received",
                svg.len() as u64,
                1,
            ),
        ),
        message(
            next(),
            "Field team",
            "Jules",
            "Checkpoint on the north road is closed today.",
            now - 6 * HOUR,
            None,
            [0, 0],
        ),
        message(
            next(),
            "Field team",
            "سلمى",
            "نعم، رأيت ذلك أيضًا. سنأخذ الطريق الآخر.",
            now - 5 * HOUR,
            None,
            [0, 0],
        ),
        message(
            next(),
            "Field team",
            "me",
            "Noted. Let's meet at the office at 14:00.",
            now - 4 * HOUR,
            Some("delivered"),
            [2, 2],
        ),
        message(
            next(),
            "Field team",
            "me",
            "I'll bring the batteries.",
            now - 40 * MIN,
            Some("sent"),
            [1, 2],
        ),
        message(next(), "Field team", "Jules", "Thanks!", now - 30 * MIN, None, [0, 0]),
    ];
    let mut files = files;
    files.push((format!("{svg_id:016x}"), svg));
    let last_at = |v: &[Value]| v.last().and_then(|m| m["at_ms"].as_u64()).unwrap_or(0);
    let threads = if first {
        Vec::new()
    } else {
        vec![
            Thread {
                name: "Amina".into(),
                group: false,
                state: "active",
                members: vec!["Amina".into()],
                invited: vec![],
                unread: 1,
                expires_at_ms: None,
                made_ms: last_at(&amina),
                messages: amina,
            },
            Thread {
                name: "سلمى".into(),
                group: false,
                state: "active",
                members: vec!["سلمى".into()],
                invited: vec![],
                unread: 0,
                expires_at_ms: None,
                made_ms: last_at(&salma),
                messages: salma,
            },
            Thread {
                name: "Field team".into(),
                group: true,
                state: "active",
                members: vec!["Jules".into(), "سلمى".into()],
                invited: vec!["Amina".into()],
                unread: 2,
                expires_at_ms: None,
                made_ms: last_at(&team),
                messages: team,
            },
            Thread {
                name: "Sam".into(),
                group: false,
                state: "inviting",
                members: vec![],
                invited: vec![],
                unread: 0,
                expires_at_ms: Some(now + 46 * HOUR),
                made_ms: now - 2 * HOUR,
                messages: vec![],
            },
        ]
    };
    let invitations = if first {
        vec![]
    } else {
        vec![
            json!({"id": "9f3c2a7e51d04b6a", "from": "Jules", "group": "Night desk", "at_ms": now - 15 * MIN}),
        ]
    };
    World {
        profile: if first { "none" } else { "closed" },
        lock_timeout_secs: 300,
        language,
        traffic: "standard".into(),
        threads,
        invitations,
        next_id: 1000,
        // Jules is verified in the field team; سلمى's mark is of another code (the notice
        // "the safety code changed"); Amina is not verified.
        marks: vec![
            (("Field team".into(), Some("Jules".into())), safety_code("Field team", Some("Jules"))),
            (("سلمى".into(), None), "1".repeat(60)),
        ],
        files,
        uploads: Vec::new(),
        steps,
    }
}

/// The invitation link every invitation of the demo shows.
pub(crate) const LINK: &str = "qanat://invite/AQGk3f1Lr0Qm9yZWZ2F0ZXdheS0xOjEyNy4wLjAuMTo3MDAxOnB1YmxpY2tleQ8tN0xQbVhyV2tqZk1TbEZ0bVJ3cVZkb0dWZ3RhQjFX";

impl Demo {
    fn answer(&self, v: &Value) -> Value {
        let cmd = v["cmd"].as_str().unwrap_or("");
        if !self.ticking.swap(true, Ordering::Relaxed) {
            self.tick();
        }
        let mut w = self.world.lock().unwrap();
        let now = now_ms();
        let s = |k: &str| v[k].as_str().unwrap_or("").to_owned();
        match cmd {
            "app_state" => {
                json!({"kind": "state", "profile": w.profile, "gateways": ["gateway-1", "gateway-2"]})
            }
            "create" => {
                w.profile = "open";
                w.language = v["language"].as_str().map(str::to_owned);
                json!({"kind": "ok"})
            }
            "unlock" if v["passphrase"] == "wrong" => {
                json!({"kind": "error", "message": "wrong passphrase", "code": "wrong_passphrase"})
            }
            "unlock" => {
                w.profile = "open";
                json!({"kind": "unlocked"})
            }
            "settings" if w.profile != "open" => {
                json!({"kind": "error", "message": "the profile is locked", "code": "locked"})
            }
            "settings" => {
                json!({"kind": "settings", "traffic": w.traffic, "language": w.language, "lock_timeout_secs": w.lock_timeout_secs})
            }
            "set_settings" => {
                if let Some(l) = v["language"].as_str() {
                    w.language = Some(l.to_owned());
                }
                if let Some(s) = v["lock_timeout_secs"].as_u64() {
                    w.lock_timeout_secs = s as u32;
                }
                json!({"kind": "ok"})
            }
            "set_traffic" => {
                w.traffic = s("traffic");
                json!({"kind": "ok"})
            }
            "network" => {
                let known = self.started.elapsed() > Duration::from_secs(4);
                let secs = self.started.elapsed().as_secs();
                let cost = |up: u64, down: u64, delay: u64, r: f64| json!({"rates": [r, r / 2.0, r / 2.0], "bytes_per_day": [up, down], "expected_delay_ms": delay});
                json!({
                    "kind": "network", "directory_epoch": known.then_some(42), "epoch_secs": known.then_some(600),
                    "layers": known.then_some(3), "mean_delay_ms": known.then_some(1000), "traffic": w.traffic,
                    "sent": [12 + secs / 20, 30 + secs / 7, 900 + secs * 3],
                    "standard": known.then(|| cost(96_000_000, 77_000_000, 9_000, 0.2)),
                    "metered": known.then(|| cost(9_600_000, 7_700_000, 68_000, 0.02)),
                    "link": {
                        "frames_out": 940 + secs * 3, "frames_in": 320 + secs, "frame_bytes": 2600,
                        "directory_epoch": if known { 42 } else { 0 }, "connected": known,
                        "today": [31_400_000 + secs * 1100, 25_200_000 + secs * 900],
                        "today_since_ms": now - now % (24 * HOUR),
                    },
                })
            }
            "contacts" => {
                let list: Vec<Value> = w
                    .threads
                    .iter()
                    .map(|t| {
                        let last = t.messages.last().cloned();
                        let activity = last.as_ref().and_then(|m| m["at_ms"].as_u64()).unwrap_or(t.made_ms);
                        let verified = !t.group
                            && w.marks.iter().any(|((n, m), c)| {
                                *n == t.name && m.is_none() && *c == safety_code(&t.name, None)
                            });
                        json!({
                            "name": t.name, "group": t.group, "state": t.state, "members": t.members,
                            "unread": t.unread, "last": last, "activity_ms": activity, "expires_at_ms": t.expires_at_ms,
                            "verified": verified,
                        })
                    })
                    .collect();
                json!({"kind": "threads", "list": list})
            }
            "group_invitations" => json!({"kind": "group_invitations", "list": w.invitations}),
            "group_accept" | "group_decline" => {
                let id = s("invitation");
                let Some(i) = w.invitations.iter().position(|i| i["id"] == id.as_str()) else {
                    return json!({"kind": "error", "message": "unknown invitation", "code": "unknown_invitation"});
                };
                let inv = w.invitations.remove(i);
                if cmd == "group_decline" {
                    return json!({"kind": "ok"});
                }
                let name = v["name"].as_str().or(inv["group"].as_str()).unwrap_or("group").to_owned();
                w.threads.push(Thread {
                    name: name.clone(),
                    group: true,
                    state: "joining",
                    members: vec![inv["from"].as_str().unwrap_or("").to_owned()],
                    invited: vec![],
                    unread: 0,
                    expires_at_ms: None,
                    made_ms: now,
                    messages: vec![],
                });
                json!({"kind": "joining", "name": name})
            }
            "history" => {
                let name = s("name");
                let Some(t) = w.threads.iter().find(|t| t.name == name) else {
                    return json!({"kind": "error", "message": "unknown name", "code": "unknown_name"});
                };
                let mut list: Vec<Value> = t.messages.clone();
                if let Some(b) = v["before"].as_str()
                    && let Some(i) = list.iter().position(|m| m["id"] == b)
                {
                    list.truncate(i);
                }
                let limit = v["limit"].as_u64().map_or(list.len(), |l| l as usize);
                let list = list.split_off(list.len().saturating_sub(limit));
                json!({"kind": "messages", "list": list})
            }
            "mark_read" => {
                let name = s("name");
                if let Some(t) = w.threads.iter_mut().find(|t| t.name == name) {
                    t.unread = 0;
                }
                json!({"kind": "ok"})
            }
            "send" => {
                let to = s("to");
                let text = s("text");
                w.next_id += 1;
                let id = w.next_id;
                let Some(t) = w.threads.iter_mut().find(|t| t.name == to) else {
                    return json!({"kind": "error", "message": "unknown name", "code": "unknown_name"});
                };
                let n = t.members.len() as u32;
                t.messages.push(message(id, &to, "me", &text, now, Some("queued"), [0, n]));
                let id = format!("{id:016x}");
                self.advance(id.clone(), to);
                json!({"kind": "sent", "id": id})
            }
            "invite" => {
                let name = s("name");
                if name.is_empty() || w.threads.iter().any(|t| t.name == name) {
                    return json!({"kind": "error", "message": "name taken", "code": "name_taken"});
                }
                w.threads.push(Thread {
                    name,
                    group: false,
                    state: "inviting",
                    members: vec![],
                    invited: vec![],
                    unread: 0,
                    expires_at_ms: Some(now + 48 * HOUR),
                    made_ms: now,
                    messages: vec![],
                });
                json!({"kind": "invitation", "link": LINK, "qr": "", "expires_at_ms": now + 48 * HOUR})
            }
            "invitation" => {
                let name = s("name");
                let exp =
                    w.threads.iter().find(|t| t.name == name).and_then(|t| t.expires_at_ms).unwrap_or(0);
                json!({"kind": "invitation", "link": LINK, "qr": "", "expires_at_ms": exp})
            }
            "accept" => {
                let name = s("name");
                if !s("link").starts_with("qanat://invite/") {
                    return json!({"kind": "error", "message": "not a link", "code": "invitation_invalid"});
                }
                w.threads.push(Thread {
                    name,
                    group: false,
                    state: "joining",
                    members: vec![],
                    invited: vec![],
                    unread: 0,
                    expires_at_ms: None,
                    made_ms: now,
                    messages: vec![],
                });
                json!({"kind": "ok"})
            }
            "members" => {
                let name = s("name");
                let Some(t) = w.threads.iter().find(|t| t.name == name) else {
                    return json!({"kind": "error", "message": "unknown name", "code": "unknown_name"});
                };
                json!({"kind": "members", "list": t.members, "invited": t.invited})
            }
            "group_create" => {
                let name = s("name");
                if name.is_empty() || w.threads.iter().any(|t| t.name == name) {
                    return json!({"kind": "error", "message": "name taken", "code": "name_taken"});
                }
                w.threads.push(Thread {
                    name,
                    group: true,
                    state: "active",
                    members: vec![],
                    invited: vec![],
                    unread: 0,
                    expires_at_ms: None,
                    made_ms: now,
                    messages: vec![],
                });
                json!({"kind": "ok"})
            }
            "group_add" | "group_remove" => {
                let (group, who) = (s("group"), if cmd == "group_add" { s("contact") } else { s("member") });
                let Some(t) = w.threads.iter_mut().find(|t| t.name == group && t.group) else {
                    return json!({"kind": "error", "message": "unknown name", "code": "unknown_name"});
                };
                // As the client does: an added contact is invited, and a member only once it
                // says yes (which nobody does here).
                if cmd == "group_add" {
                    if !t.invited.contains(&who) {
                        t.invited.push(who);
                    }
                    return json!({"kind": "ok"});
                }
                t.members.retain(|m| *m != who);
                let ev = json!({"type": "group_changed", "name": group, "added": [], "removed": [who]});
                let _ = self.events.send(ev.to_string());
                json!({"kind": "ok"})
            }
            "group_leave" => {
                let group = s("group");
                if let Some(t) = w.threads.iter_mut().find(|t| t.name == group) {
                    t.state = "left";
                }
                json!({"kind": "ok"})
            }
            "safety_code" => {
                let (name, member) = (s("name"), v["member"].as_str().map(str::to_owned));
                if !w.threads.iter().any(|t| t.name == name && t.state == "active") {
                    return json!({"kind": "error", "message": "not ready", "code": "not_ready"});
                }
                let code = safety_code(&name, member.as_deref());
                let mark = w.marks.iter().find(|(k, _)| *k == (name.clone(), member.clone())).map(|(_, c)| c);
                json!({"kind": "safety_code", "code": code, "verified": mark == Some(&code),
                       "changed": mark.is_some_and(|m| *m != code)})
            }
            "set_verified" => {
                let key = (s("name"), v["member"].as_str().map(str::to_owned));
                let code = safety_code(&key.0, key.1.as_deref());
                if s("code").split_whitespace().collect::<String>() != code {
                    return json!({"kind": "error", "message": "not the current code", "code": "not_current_code"});
                }
                w.marks.retain(|(k, _)| *k != key);
                if v["verified"] == true {
                    w.marks.push((key, code));
                }
                json!({"kind": "ok"})
            }
            "change_passphrase" | "set_duress" => {
                let given = if cmd == "set_duress" { &v["passphrase"] } else { &v["old"] };
                if given == "wrong" {
                    return json!({"kind": "error", "message": "wrong passphrase", "code": "wrong_passphrase"});
                }
                json!({"kind": "ok"})
            }
            "wipe" if v["confirm"] != "wipe" => {
                json!({"kind": "error", "message": "type the word wipe to confirm", "code": "confirm"})
            }
            "wipe" => {
                let fresh = demo_world(true, None);
                *w = fresh;
                json!({"kind": "ok"})
            }
            "quit" => {
                w.profile = "closed";
                json!({"kind": "ok"})
            }
            "lock" => json!({"kind": "ok"}),
            "estimate" => {
                let to = s("to");
                let Some(t) = w.threads.iter().find(|t| t.name == to) else {
                    return json!({"kind": "error", "message": "unknown name", "code": "unknown_name"});
                };
                // The demo's contacts allow the fast mode; its groups do not.
                media::estimate(v["size"].as_u64().unwrap_or(0), t.members.len() as u64, !t.group)
            }
            "attach_begin" => {
                let (to, size) = (s("to"), v["size"].as_u64().unwrap_or(0));
                if !w.threads.iter().any(|t| t.name == to && t.state == "active") {
                    return json!({"kind": "error", "message": "not ready", "code": "not_ready"});
                }
                if size > media::LIMIT {
                    return json!({"kind": "error", "message": "too large", "code": "file_too_large"});
                }
                w.next_id += 1;
                let id = format!("{:032x}", w.next_id);
                w.uploads.push(Upload {
                    id: id.clone(),
                    to,
                    name: s("name"),
                    mime: s("mime"),
                    kind: s("kind"),
                    size,
                    duration_ms: v["duration_ms"].as_u64(),
                    data: Vec::new(),
                });
                json!({"kind": "attach", "id": id})
            }
            "attach_part" => {
                let id = s("id");
                let Some(u) = w.uploads.iter_mut().find(|u| u.id == id) else {
                    return json!({"kind": "error", "message": "no such upload", "code": "upload_unknown"});
                };
                let Some(data) = media::unbase64(&s("data")).filter(|d| d.len() <= 48 * 1024) else {
                    return json!({"kind": "error", "message": "not a part", "code": "refused"});
                };
                if v["offset"].as_u64() != Some(u.data.len() as u64)
                    || (u.data.len() + data.len()) as u64 > u.size
                {
                    return json!({"kind": "error", "message": "out of order", "code": "upload_out_of_order"});
                }
                u.data.extend_from_slice(&data);
                json!({"kind": "ok"})
            }
            "attach_abort" => {
                let id = s("id");
                w.uploads.retain(|u| u.id != id);
                json!({"kind": "ok"})
            }
            "attach_commit" => {
                let id = s("id");
                let Some(i) = w.uploads.iter().position(|u| u.id == id) else {
                    return json!({"kind": "error", "message": "no such upload", "code": "upload_unknown"});
                };
                let u = w.uploads.remove(i);
                if u.data.len() as u64 != u.size {
                    return json!({"kind": "error", "message": "incomplete", "code": "upload_out_of_order"});
                }
                w.next_id += 1;
                let n = w.next_id;
                let mid = format!("{n:016x}");
                // Handed over files arrive in about 15 s here (fast ones in half that).
                let fast = v["fast"] == true;
                let step = (u.size / if fast { 7 } else { 15 }).max(1);
                let Some(t) = w.threads.iter_mut().find(|t| t.name == u.to) else {
                    return json!({"kind": "error", "message": "unknown name", "code": "unknown_name"});
                };
                let members = t.members.len() as u32;
                let mut f = file(&u.name, &u.mime, &u.kind, u.size, u.duration_ms, "sending", 0, step);
                f["fast"] = json!(fast);
                t.messages.push(file_message(n, &u.to, "me", "", now, Some("queued"), [0, members], f));
                w.files.push((mid.clone(), u.data));
                w.steps.push((mid.clone(), step));
                json!({"kind": "sent", "id": mid})
            }
            "file_accept" | "file_decline" | "transfer_cancel" | "file_delete" => {
                let id = s("id");
                let Some((thread, m)) = w
                    .threads
                    .iter_mut()
                    .find_map(|t| {
                        t.messages.iter_mut().find(|m| m["id"] == id.as_str()).map(|m| (t.name.clone(), m))
                    })
                    .filter(|(_, m)| m["file"].is_object())
                else {
                    return json!({"kind": "error", "message": "no such file", "code": "no_such_file"});
                };
                let state = m["file"]["state"].as_str().unwrap_or("").to_owned();
                let next = match (cmd, state.as_str()) {
                    ("file_accept", "offered") => "receiving",
                    ("file_decline", "offered") => "cancelled",
                    ("transfer_cancel", "sending" | "receiving") => "cancelled",
                    ("file_delete", _) => "deleted",
                    _ => return json!({"kind": "error", "message": "not now", "code": "refused"}),
                };
                if next == "deleted" {
                    for t in &mut w.threads {
                        t.messages.retain(|m| m["id"] != id.as_str());
                    }
                    return json!({"kind": "ok"});
                }
                m["file"]["state"] = json!(next);
                m["file"]["eta_secs"] = Value::Null;
                let ev = transfer_event(&thread, m);
                if next == "receiving" {
                    let step = (m["file"]["size"].as_u64().unwrap_or(0) / 20).max(1);
                    w.steps.push((id, step));
                }
                let _ = self.events.send(ev.to_string());
                json!({"kind": "ok"})
            }
            "file_part" => {
                let (id, offset) = (s("id"), v["offset"].as_u64().unwrap_or(0));
                let len = v["len"].as_u64().unwrap_or(0);
                if len > 48 * 1024 {
                    return json!({"kind": "error", "message": "too long a part", "code": "refused"});
                }
                let Some(m) = w.threads.iter().flat_map(|t| &t.messages).find(|m| m["id"] == id.as_str())
                else {
                    return json!({"kind": "error", "message": "no such file", "code": "no_such_file"});
                };
                let f = &m["file"];
                let mine = m["sender"] == "me";
                let ready = matches!(f["state"].as_str(), Some("received"))
                    || (mine && matches!(f["state"].as_str(), Some("sent" | "sending")));
                if !ready {
                    return json!({"kind": "error", "message": "not received", "code": "file_not_ready"});
                }
                let total = f["size"].as_u64().unwrap_or(0);
                let (from, to) = (offset.min(total), (offset + len).min(total));
                let data = match w.files.iter().find(|(k, _)| *k == id) {
                    Some((_, b)) => b[from as usize..to as usize].to_vec(),
                    None => media::filler(from, (to - from) as usize),
                };
                json!({"kind": "file_data", "data": media::base64(&data), "total": total})
            }
            "transfers" => {
                let name = v["name"].as_str();
                let list: Vec<Value> = w
                    .threads
                    .iter()
                    .filter(|t| name.is_none_or(|n| n == t.name))
                    .flat_map(|t| {
                        t.messages
                            .iter()
                            .filter(|m| m["file"].is_object())
                            .map(|m| transfer_event(&t.name, m))
                    })
                    .collect();
                json!({"kind": "transfers", "list": list})
            }
            _ => {
                json!({"kind": "error", "message": format!("the preview does not know {cmd}"), "code": "refused"})
            }
        }
    }

    /// A sent message moves on: sent after 1.5 s, delivered after 4 s (and the recipient
    /// answers once, 6 s later).
    fn advance(&self, id: String, thread: String) {
        let me = self.clone();
        tokio::spawn(async move {
            for (wait, state) in [(1500, "sent"), (2500, "delivered")] {
                tokio::time::sleep(Duration::from_millis(wait)).await;
                {
                    let mut w = me.world.lock().unwrap();
                    for t in &mut w.threads {
                        for m in &mut t.messages {
                            if m["id"] == id.as_str() {
                                m["state"] = json!(state);
                                if state == "delivered" {
                                    m["delivered"][0] = m["delivered"][1].clone();
                                }
                            }
                        }
                    }
                }
                let _ = me.events.send(json!({"type": "delivery", "id": id, "state": state}).to_string());
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
            let ev = {
                let mut w = me.world.lock().unwrap();
                w.next_id += 1;
                let nid = w.next_id;
                let Some(t) = w.threads.iter_mut().find(|t| t.name == thread) else { return };
                let sender = t.members.first().cloned().unwrap_or_default();
                let m = message(nid, &thread, &sender, "Received, thank you.", now_ms(), None, [0, 0]);
                t.messages.push(m.clone());
                t.unread += 1;
                let mut ev = m;
                ev["type"] = json!("message");
                if let Some(o) = ev.as_object_mut() {
                    o.remove("state");
                    o.remove("delivered");
                }
                ev
            };
            let _ = me.events.send(ev.to_string());
        });
    }
}

impl Demo {
    /// The demo over `world`; its network costs are known four seconds from now.
    pub(crate) fn new(world: World) -> Self {
        Self {
            world: Arc::new(Mutex::new(world)),
            events: broadcast::channel(64).0,
            started: Instant::now(),
            ticking: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Moves every moving transfer on once a second, with a `transfer` event each (and one at
    /// the end, where ours also become delivered).
    fn tick(&self) {
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let mut events = Vec::new();
                {
                    let mut w = me.world.lock().unwrap();
                    let steps = w.steps.clone();
                    for t in &mut w.threads {
                        let n = t.members.len() as u32;
                        for m in &mut t.messages {
                            let state = m["file"]["state"].as_str().unwrap_or("");
                            if state != "sending" && state != "receiving" {
                                continue;
                            }
                            let mine = state == "sending";
                            let id = m["id"].as_str().unwrap_or("").to_owned();
                            let step = steps.iter().find(|(k, _)| *k == id).map_or(1, |(_, s)| *s);
                            let total = m["file"]["total_bytes"].as_u64().unwrap_or(0);
                            let done = (m["file"]["done_bytes"].as_u64().unwrap_or(0) + step).min(total);
                            m["file"]["done_bytes"] = json!(done);
                            m["file"]["rate_bps"] = json!(step as f64);
                            m["file"]["eta_secs"] = json!((total - done) / step.max(1));
                            if mine && m["state"] == "queued" {
                                m["state"] = json!("sent");
                                events.push(json!({"type": "delivery", "id": id, "state": "sent"}));
                            }
                            if done == total {
                                m["file"]["state"] = json!(if mine { "sent" } else { "received" });
                                m["file"]["eta_secs"] = Value::Null;
                                if mine {
                                    m["state"] = json!("delivered");
                                    m["delivered"] = json!([n, n]);
                                    events.push(json!({"type": "delivery", "id": id, "state": "delivered"}));
                                }
                            }
                            events.push(transfer_event(&t.name, m));
                        }
                    }
                }
                for ev in events {
                    let _ = me.events.send(ev.to_string());
                }
            }
        });
    }
}

/// The `transfer` event of file message `m` in `thread`, as it is now.
fn transfer_event(thread: &str, m: &Value) -> Value {
    let f = &m["file"];
    json!({
        "type": "transfer", "id": m["id"], "thread": thread,
        "direction": if m["sender"] == "me" { "out" } else { "in" }, "state": f["state"],
        "done_bytes": f["done_bytes"], "total_bytes": f["total_bytes"], "rate_bps": f["rate_bps"],
        "eta_secs": f["eta_secs"],
    })
}

impl Backend for Demo {
    async fn call(&self, body: Zeroizing<Vec<u8>>) -> Vec<u8> {
        let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        serde_json::to_vec(&self.answer(&v)).unwrap_or_default()
    }

    fn subscribe(&self) -> broadcast::Receiver<String> {
        self.events.subscribe()
    }
}
