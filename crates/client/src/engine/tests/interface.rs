//! What an interface asks of the engine through the control API: pages of a history, read
//! marks, an invitation shown again, the list by activity, settings, the network's costs, and
//! refusals with a code it can word in the user's language.

use crate::control::{self, EventOut, MessageOut, Request, Response};

use super::*;

fn call(w: &mut World, c: usize, req: Request) -> Response {
    let now = w.now;
    control::execute(w.clients[c].e(), req, false, now, &mut w.rng)
}

fn messages(r: Response) -> Vec<MessageOut> {
    match r {
        Response::Messages { list } => list,
        r => panic!("{r:?}"),
    }
}

#[test]
fn a_history_pages_back_from_the_newest_and_read_marks_are_per_thread() {
    let mut w = World::new(31, 0.0, &[1, 2, 1]);
    w.connect(0, "ann", 1, "bob");
    w.connect(0, "ann", 2, "cat");
    for i in 0..7 {
        let now = w.now;
        w.clients[1].e().send("ann", &format!("b{i}"), now, &mut w.rng).unwrap();
        w.run_for(Duration::from_millis(200));
    }
    let now = w.now;
    w.clients[2].e().send("ann", "c0", now, &mut w.rng).unwrap();
    w.run_until(Duration::from_secs(60), |w| w.clients[0].texts().len() == 8);
    // The event of an arrival names the history entry it made.
    let arrived: Vec<String> = w.clients[0]
        .events
        .iter()
        .filter_map(|e| match EventOut::of(e) {
            EventOut::Message { id, thread, .. } if thread == "bob" => Some(id),
            _ => None,
        })
        .collect();
    let all = messages(call(&mut w, 0, Request::History { name: "bob".into(), before: None, limit: None }));
    assert_eq!(all.iter().map(|m| m.id.clone()).collect::<Vec<_>>(), arrived);
    // The newest three, then the three before them, then the rest; oldest first in each page.
    let page = |w: &mut World, before: Option<String>| {
        let r = call(w, 0, Request::History { name: "bob".into(), before, limit: Some(3) });
        messages(r).into_iter().map(|m| (m.id, m.text)).collect::<Vec<_>>()
    };
    let p1 = page(&mut w, None);
    assert_eq!(p1.iter().map(|m| m.1.as_str()).collect::<Vec<_>>(), ["b4", "b5", "b6"]);
    let p2 = page(&mut w, Some(p1[0].0.clone()));
    assert_eq!(p2.iter().map(|m| m.1.as_str()).collect::<Vec<_>>(), ["b1", "b2", "b3"]);
    let p3 = page(&mut w, Some(p2[0].0.clone()));
    assert_eq!(p3.iter().map(|m| m.1.as_str()).collect::<Vec<_>>(), ["b0"]);
    assert!(page(&mut w, Some(p3[0].0.clone())).is_empty());
    // An id that is not one is refused with its code.
    match call(&mut w, 0, Request::History { name: "bob".into(), before: Some("zz".into()), limit: None }) {
        Response::Error { code, .. } => assert_eq!(code.as_deref(), Some("unknown_message")),
        r => panic!("{r:?}"),
    }
    // The list: newest activity first, with the last message and unread counts.
    let list = |w: &mut World| match call(w, 0, Request::Contacts) {
        Response::Threads { list } => list,
        r => panic!("{r:?}"),
    };
    let l = list(&mut w);
    assert_eq!(l.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["cat", "bob"]);
    assert_eq!(l[0].last.as_ref().map(|m| m.text.as_str()), Some("c0"));
    assert_eq!((l[0].unread, l[1].unread), (1, 7));
    assert!(l[0].activity_ms >= l[1].activity_ms && l[1].activity_ms > 0);
    // Reading Bob's conversation marks only its messages read.
    assert_eq!(call(&mut w, 0, Request::MarkRead { name: "bob".into() }), Response::Ok);
    let l = list(&mut w);
    assert_eq!((l[0].unread, l[1].unread), (1, 0));
    // Ours carry their delivery: acknowledged by one of one.
    let now = w.now;
    w.clients[0].e().send("bob", "to bob", now, &mut w.rng).unwrap();
    w.run_until(Duration::from_secs(60), |w| w.clients[0].engine.as_ref().unwrap().undelivered() == 0);
    let last =
        messages(call(&mut w, 0, Request::History { name: "bob".into(), before: None, limit: Some(1) }));
    assert_eq!(last[0].text, "to bob");
    assert_eq!((last[0].state.as_deref(), last[0].delivered), (Some("delivered"), Some([1, 1])));
}

#[test]
fn a_waiting_invitation_is_shown_again_until_answered() {
    let mut w = World::new(32, 0.0, &[1, 2]);
    let (link, expires) = match call(&mut w, 0, Request::Invite { name: "bob".into() }) {
        Response::Invitation { link, expires_at_ms, .. } => (link, expires_at_ms),
        r => panic!("{r:?}"),
    };
    let now_ms = UnixMillis::from_system_time(w.now).as_millis();
    assert_eq!(expires, now_ms + invite::DEFAULT_VALIDITY_MS);
    match call(&mut w, 0, Request::Invitation { name: "bob".into() }) {
        Response::Invitation { link: again, expires_at_ms, .. } => {
            assert_eq!((again, expires_at_ms), (link.clone(), expires))
        }
        r => panic!("{r:?}"),
    }
    match call(&mut w, 0, Request::Contacts) {
        Response::Threads { list } => {
            assert_eq!((list[0].state.as_str(), list[0].expires_at_ms), ("inviting", Some(expires)));
            assert!(list[0].last.is_none() && list[0].activity_ms > 0);
        }
        r => panic!("{r:?}"),
    }
    let now = w.now;
    w.clients[1].e().accept(&link, "ann", now, &mut w.rng).unwrap();
    w.run_until(Duration::from_secs(60), |w| {
        w.clients[0].events.contains(&EngineEvent::ContactReady { name: "bob".into() })
    });
    match call(&mut w, 0, Request::Invitation { name: "bob".into() }) {
        Response::Error { code, .. } => assert_eq!(code.as_deref(), Some("not_ready")),
        r => panic!("{r:?}"),
    }
    match call(&mut w, 0, Request::Invitation { name: "nobody".into() }) {
        Response::Error { code, .. } => assert_eq!(code.as_deref(), Some("unknown_name")),
        r => panic!("{r:?}"),
    }
    // Accepting the same link again is refused by its kind.
    let now = w.now;
    let e = w.clients[1].e().accept(&link, "ann2", now, &mut w.rng).unwrap_err();
    assert_eq!(e.code(), "invitation_used");
}

#[test]
fn settings_are_checked_and_kept_and_the_traffic_profile_changes_the_rates() {
    let mut w = World::new(33, 0.0, &[1]);
    let settings = |w: &mut World| call(w, 0, Request::Settings);
    assert_eq!(
        settings(&mut w),
        Response::Settings {
            traffic: "standard".into(),
            language: None,
            lock_timeout_secs: DEFAULT_LOCK_TIMEOUT_SECS,
            max_file_bytes: 4 << 20,
            auto_accept_bytes: 1 << 20,
        }
    );
    for bad in [
        Request::SetSettings {
            language: Some("xx".into()),
            lock_timeout_secs: None,
            max_file_bytes: None,
            auto_accept_bytes: None,
        },
        Request::SetSettings {
            language: None,
            lock_timeout_secs: Some(10),
            max_file_bytes: None,
            auto_accept_bytes: None,
        },
        Request::SetSettings {
            language: Some("fr".into()),
            lock_timeout_secs: Some(100_000),
            max_file_bytes: None,
            auto_accept_bytes: None,
        },
        Request::SetTraffic { traffic: "fast".into() },
    ] {
        match call(&mut w, 0, bad) {
            Response::Error { code, .. } => assert_eq!(code.as_deref(), Some("invalid_setting")),
            r => panic!("{r:?}"),
        }
    }
    assert_eq!(
        settings(&mut w),
        Response::Settings {
            traffic: "standard".into(),
            language: None,
            lock_timeout_secs: 300,
            max_file_bytes: 4 << 20,
            auto_accept_bytes: 1 << 20
        }
    );
    let standard = w.clients[0].e().rates().unwrap();
    let req = Request::SetSettings {
        language: Some("ar".into()),
        lock_timeout_secs: Some(900),
        max_file_bytes: Some(2 << 20),
        auto_accept_bytes: Some(100_000),
    };
    assert_eq!(call(&mut w, 0, req), Response::Ok);
    assert_eq!(call(&mut w, 0, Request::SetTraffic { traffic: "metered".into() }), Response::Ok);
    let metered = w.clients[0].e().rates().unwrap();
    assert!((metered.payload - standard.payload / 10.0).abs() < 1e-9, "{metered:?} {standard:?}");
    // Kept across a restart.
    let net = std::mem::replace(&mut w.net, Net::new(1, 0.0));
    w.clients[0].restart(&net, w.now);
    w.net = net;
    assert_eq!(
        settings(&mut w),
        Response::Settings {
            traffic: "metered".into(),
            language: Some("ar".into()),
            lock_timeout_secs: 900,
            max_file_bytes: 2 << 20,
            auto_accept_bytes: 100_000
        }
    );
    assert_eq!(w.clients[0].e().rates().unwrap(), metered);
}

#[test]
fn the_network_answer_gives_each_profiles_cost_and_delay_from_the_directory() {
    let mut w = World::new(34, 0.0, &[1]);
    let (layers, mean_ms, lp) = {
        let p = &w.net.params;
        (p.mix_layers(), u64::from(p.mean_delay_ms()), p.lambda_p().per_second())
    };
    match call(&mut w, 0, Request::Network) {
        Response::Network {
            directory_epoch,
            layers: l,
            mean_delay_ms,
            traffic,
            standard,
            metered,
            link,
            ..
        } => {
            assert_eq!(directory_epoch, Some(w.net.topology.epoch));
            assert_eq!(
                (l, mean_delay_ms, traffic.as_str(), link),
                (Some(layers as u32), Some(mean_ms), "standard", None)
            );
            let (s, m) = (standard.unwrap(), metered.unwrap());
            let delay = |lp: f64| ((2.0 / lp) * 1000.0) as u64 + layers as u64 * mean_ms;
            assert!(s.expected_delay_ms.abs_diff(delay(lp)) <= 1, "{s:?}");
            assert!(m.expected_delay_ms.abs_diff(delay(lp / 10.0)) <= 1, "{m:?}");
            assert_eq!(s.rates[0], lp);
            // A tenth of the packets: about a tenth of the bytes.
            let idle = w.clients[0].e().idle_bytes_per_day().unwrap();
            assert_eq!(s.bytes_per_day, [idle.0.round() as u64, idle.1.round() as u64]);
            assert!(
                m.bytes_per_day[0] * 9 < s.bytes_per_day[0] && m.bytes_per_day[0] * 11 > s.bytes_per_day[0]
            );
        }
        r => panic!("{r:?}"),
    }
}

#[test]
fn requests_of_earlier_clients_still_parse_and_new_ones_round_trip() {
    let old: Request = serde_json::from_str(r#"{"cmd":"history","name":"bob"}"#).unwrap();
    assert_eq!(old, Request::History { name: "bob".into(), before: None, limit: None });
    let old: Response = serde_json::from_str(r#"{"kind":"error","message":"no"}"#).unwrap();
    assert_eq!(old, Response::error("no"));
    let old: Response = serde_json::from_str(r#"{"kind":"invitation","link":"l","qr":"q"}"#).unwrap();
    assert_eq!(old, Response::Invitation { link: "l".into(), qr: "q".into(), expires_at_ms: 0 });
    for r in [
        Request::MarkRead { name: "bob".into() },
        Request::Invitation { name: "bob".into() },
        Request::SetTraffic { traffic: "metered".into() },
        Request::Settings,
        Request::SetSettings {
            language: Some("fr".into()),
            lock_timeout_secs: None,
            max_file_bytes: None,
            auto_accept_bytes: None,
        },
        Request::Network,
        Request::History { name: "b".into(), before: Some("00".into()), limit: Some(100) },
    ] {
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<Request>(&json).unwrap(), r, "{json}");
    }
    let e = EngineEvent::Left { name: "team".into() };
    let json = serde_json::to_string(&Response::event(&e)).unwrap();
    assert!(json.contains(r#""event":{"type":"left","name":"team"}"#), "{json}");
}
