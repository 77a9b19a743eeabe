//! Safety codes: both sides of a contact compute one code, a group has one per member pair, a
//! code outlives commits, a stale code is never marked, marks survive a restart and go with the
//! conversation or the member.

use super::*;
use crate::engine::rows::{NS_VERIFIED, VerifiedMark, encode, mark_key};
use crate::engine::safety::SafetyCode;
use crate::mls::MemberId;

impl Client {
    /// This client's thread id and own member id in thread `name`.
    fn own_in(&self, name: &str) -> ([u8; 16], MemberId) {
        let t = self.thread(name).id;
        (t, self.engine.as_ref().unwrap().convs[&t].own_id())
    }

    /// How this client labels, in thread `name`, the member `m`.
    fn label_of(&self, name: &str, m: &MemberId) -> String {
        let t = self.thread(name).id;
        self.engine.as_ref().unwrap().label(t, m)
    }

    fn code(&mut self, name: &str, member: Option<&str>) -> (SafetyCode, bool) {
        self.e().safety_code(name, member).unwrap()
    }

    fn marks(&self, name: &str) -> usize {
        let t = self.thread(name).id;
        self.engine.as_ref().unwrap().profile.keys(NS_VERIFIED).iter().filter(|k| k.starts_with(&t)).count()
    }
}

/// The code with one digit changed.
fn stale(code: &SafetyCode) -> String {
    let d = code.digits();
    let last = if d.ends_with('0') { '1' } else { '0' };
    format!("{}{last}", &d[..d.len() - 1])
}

#[test]
fn both_sides_of_a_contact_see_one_code_and_a_mark_survives_a_restart() {
    let mut w = World::new(41, 0.0, &[1, 2]);
    w.connect(0, "ann", 1, "bob");
    let (code, verified) = w.clients[0].code("bob", None);
    assert_eq!(w.clients[1].code("ann", None), (code.clone(), false), "both sides compute one code");
    assert!(!verified);
    // It is the code of the conversation's MLS group id and the two signature keys.
    let ((t, ann), (_, bob)) = (w.clients[1].own_in("ann"), w.clients[0].own_in("bob"));
    let id = w.clients[1].engine.as_ref().unwrap().convs[&t].id();
    assert_eq!(SafetyCode::new(id.as_bytes(), ann.as_bytes(), bob.as_bytes()), Some(code.clone()));
    // The contact's label names the same member.
    assert_eq!(w.clients[0].code("bob", Some("bob")).0, code);
    let e = w.clients[0].e();
    assert!(matches!(e.safety_code("bob", Some("nobody")), Err(EngineError::UnknownMember(..))));
    assert!(matches!(e.safety_code("nobody", None), Err(EngineError::UnknownName(_))));

    // Talking changes nothing (the contact's mailboxes rotated, keys did not).
    let now = w.now;
    w.clients[0].e().send("bob", "hi", now, &mut w.rng).unwrap();
    w.clients[1].e().send("ann", "hello", now, &mut w.rng).unwrap();
    w.run_until(Duration::from_secs(60), |w| w.clients.iter().all(|c| c.texts().len() == 1));
    assert_eq!(w.clients[0].code("bob", None).0, code);

    // A code other than the current one is never marked: a digit off, garbage, Arabic digits.
    let arabic: String =
        code.digits().chars().map(|c| char::from_u32(0x0660 + (c as u32 - 0x30)).unwrap()).collect();
    for wrong in [stale(&code), "12345".into(), String::new(), arabic] {
        let r = w.clients[0].e().set_verified("bob", None, &wrong, true);
        assert!(matches!(r, Err(EngineError::NotCurrentCode(ref n)) if n == "bob"), "{r:?}");
        assert!(!r.unwrap_err().is_fatal());
    }
    assert_eq!(w.clients[0].marks("bob"), 0);
    assert!(!w.clients[0].e().threads().unwrap()[0].verified);

    // Marked as shown (3 rows of 4 groups): verified here, not on Bob's side.
    w.clients[0].e().set_verified("bob", None, &code.rows().join("\n"), true).unwrap();
    assert_eq!(w.clients[0].code("bob", None), (code.clone(), true));
    assert!(w.clients[0].e().threads().unwrap()[0].verified);
    assert_eq!(w.clients[1].code("ann", None), (code.clone(), false));
    w.clients[0].restart(&w.net, w.now);
    assert_eq!(w.clients[0].code("bob", None), (code.clone(), true), "the mark is saved");
    assert!(w.clients[0].e().threads().unwrap()[0].verified);

    // Unmarked (with the current code too), and marked again.
    assert!(w.clients[0].e().set_verified("bob", None, &stale(&code), false).is_err());
    assert!(w.clients[0].code("bob", None).1);
    w.clients[0].e().set_verified("bob", None, code.digits(), false).unwrap();
    assert_eq!(w.clients[0].code("bob", None), (code.clone(), false));
    w.clients[0].restart(&w.net, w.now);
    assert!(!w.clients[0].code("bob", None).1);
    w.clients[0].e().set_verified("bob", None, &code.to_string(), true).unwrap();

    // A mark of another code (made by other code) is shown as not verified, never carried over.
    let key = mark_key(w.clients[0].own_in("bob").0, ann.as_bytes());
    let other = encode(&VerifiedMark(SafetyCode::parse(&stale(&code)).unwrap()));
    w.clients[0].e().profile.put(NS_VERIFIED, &key, &other).unwrap();
    assert_eq!(w.clients[0].code("bob", None), (code.clone(), false));
    assert!(!w.clients[0].e().threads().unwrap()[0].verified);
    // ... and said to have changed (the page's notice), which the current mark is not.
    assert!(w.clients[0].e().safety_code_changed("bob", None).unwrap());
    w.clients[0].e().set_verified("bob", None, code.digits(), true).unwrap();
    assert!(!w.clients[0].e().safety_code_changed("bob", None).unwrap());
    w.clients[0].e().set_verified("bob", None, code.digits(), false).unwrap();
    assert!(!w.clients[0].e().safety_code_changed("bob", None).unwrap(), "no mark: nothing changed");
    // A mark of a later version is refused by name, a damaged one as damaged (never misread).
    let later = [&[2][..], code.digits().as_bytes()].concat();
    w.clients[0].e().profile.put(NS_VERIFIED, &key, &later).unwrap();
    let err = w.clients[0].e().safety_code("bob", None).unwrap_err();
    assert!(
        matches!(err, EngineError::NewerFormat { what: "safety code verified", found: 2, known: 1 }),
        "{err}"
    );
    w.clients[0].e().profile.put(NS_VERIFIED, &key, &[1, b'1', b'2']).unwrap();
    let err = w.clients[0].e().safety_code("bob", None).unwrap_err();
    assert!(matches!(err, EngineError::Corrupt("safety code verified")), "{err}");
}

#[test]
fn a_contact_not_set_up_has_no_code() {
    let mut w = World::new(42, 0.0, &[1, 2]);
    let now = w.now;
    let inv = w.clients[0].e().invite("bob", now, &mut w.rng).unwrap();
    w.clients[1].e().accept(&inv.to_link(), "ann", now, &mut w.rng).unwrap();
    assert!(matches!(w.clients[0].e().safety_code("bob", None), Err(EngineError::NotReady(..))));
    assert!(matches!(w.clients[1].e().safety_code("ann", None), Err(EngineError::NotReady(..))));
    assert!(matches!(w.clients[1].e().set_verified("ann", None, "", true), Err(EngineError::NotReady(..))));
    assert!(w.clients[0].e().threads().unwrap().iter().all(|t| !t.verified));
}

#[test]
fn a_group_has_one_code_per_member_pair_that_outlives_commits() {
    let mut w = World::new(43, 0.0, &[1, 2, 1, 2]);
    w.connect(0, "ann", 1, "b");
    w.connect(0, "ann", 2, "c");
    w.connect(0, "ann", 3, "d");
    w.clients[0].e().create_group("team", &mut w.rng).unwrap();
    for (i, name) in [(1, "b"), (2, "c")] {
        w.clients[0].e().group_add("team", name, w.now, &mut w.rng).unwrap();
        let joined = EngineEvent::GroupJoined { name: "team".into() };
        w.run_until(Duration::from_secs(120), |w| w.clients[i].events.contains(&joined));
    }
    w.run_until(Duration::from_secs(120), |w| (0..3).all(|i| w.clients[i].clients_members("team") == 2));
    assert!(matches!(w.clients[0].e().safety_code("team", None), Err(EngineError::MemberNeeded(_))));

    // The code of each pair, as each of its two members sees it.
    let codes = |w: &mut World, members: &[usize]| -> Vec<((usize, usize), SafetyCode)> {
        let ids: Vec<MemberId> = members.iter().map(|&i| w.clients[i].own_in("team").1).collect();
        let mut out = Vec::new();
        for (x, &i) in members.iter().enumerate() {
            for (y, &j) in members.iter().enumerate().filter(|(y, _)| *y > x) {
                let (li, lj) =
                    (w.clients[i].label_of("team", &ids[y]), w.clients[j].label_of("team", &ids[x]));
                let (ci, cj) =
                    (w.clients[i].code("team", Some(&li)).0, w.clients[j].code("team", Some(&lj)).0);
                assert_eq!(ci, cj, "clients {i} and {j} see one code");
                out.push(((i, j), ci));
            }
        }
        out
    };
    let before = codes(&mut w, &[0, 1, 2]);
    let contact = w.clients[0].code("b", None).0;
    let mut all: Vec<&str> = before.iter().map(|(_, c)| c.digits()).collect();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), 3, "one code per pair");
    assert_ne!(contact, before[0].1, "the group's keys are not the contact's");

    // Ann marks Bob and Cat, Cat marks Ann.
    w.clients[0].e().set_verified("team", Some("b"), before[0].1.digits(), true).unwrap();
    w.clients[0].e().set_verified("team", Some("c"), before[1].1.digits(), true).unwrap();
    let ann_at_c = w.clients[2].label_of("team", &w.clients[0].own_in("team").1);
    w.clients[2].e().set_verified("team", Some(&ann_at_c), before[1].1.digits(), true).unwrap();
    assert!(w.clients[0].code("team", Some("b")).1 && w.clients[0].code("team", Some("c")).1);
    assert!(!w.clients[0].e().threads().unwrap().iter().any(|t| t.group && t.verified));

    // Commits: D added, C removed. The codes of those who stay do not change, and the marks hold.
    w.clients[0].e().group_add("team", "d", w.now, &mut w.rng).unwrap();
    let joined = EngineEvent::GroupJoined { name: "team".into() };
    w.run_until(Duration::from_secs(120), |w| w.clients[3].events.contains(&joined));
    w.run_until(Duration::from_secs(120), |w| (0..4).all(|i| w.clients[i].clients_members("team") == 3));
    let with_d = codes(&mut w, &[0, 1, 2, 3]);
    assert_eq!(with_d[..2], before[..2]);
    assert_eq!(with_d.iter().find(|(p, _)| *p == (1, 2)), before.iter().find(|(p, _)| *p == (1, 2)));
    let now = w.now;
    w.clients[0].e().group_remove("team", "c", now, &mut w.rng).unwrap();
    let left = EngineEvent::Left { name: "team".into() };
    w.run_until(Duration::from_secs(120), |w| w.clients[2].events.contains(&left));
    w.run_until(Duration::from_secs(120), |w| {
        [0, 1, 3].iter().all(|&i| w.clients[i].clients_members("team") == 2)
    });
    let after = codes(&mut w, &[0, 1, 3]);
    assert_eq!(after[0], before[0], "Ann and Bob");
    assert_eq!(after, with_d.into_iter().filter(|((i, j), _)| *i != 2 && *j != 2).collect::<Vec<_>>());
    assert!(w.clients[0].code("team", Some("b")).1, "Ann's mark of Bob holds");
    // C's mark at Ann went with C; C's own marks went with its conversation, across a restart too.
    assert_eq!(w.clients[0].marks("team"), 1);
    assert_eq!(w.clients[2].marks("team"), 0);
    assert!(matches!(w.clients[2].e().safety_code("team", Some(&ann_at_c)), Err(EngineError::NotReady(..))));
    w.clients[2].restart(&w.net, w.now);
    assert_eq!(w.clients[2].marks("team"), 0);
    w.clients[0].restart(&w.net, w.now);
    assert!(w.clients[0].code("team", Some("b")).1);
    assert!(!w.clients[0].code("team", Some("d")).1);
}
