//! The rule of `EngineError::is_fatal`.

use super::*;

#[test]
fn only_the_profiles_errors_and_broken_invariants_are_fatal() {
    use crate::store::StoreError;
    let store = || StoreError::Corrupt { path: "p".into(), reason: "test".into() };
    let fatal = [
        EngineError::Store(store()),
        EngineError::Invite(InviteError::Store(store())),
        EngineError::Corrupt("test"),
        EngineError::Format(1),
        EngineError::NewerFormat { what: "test", found: 2, known: 1 },
        EngineError::Invite(InviteError::NewerRecord { what: "test", found: 2 }),
        EngineError::NotInitialized,
        EngineError::Mls(MlsError::Internal("test".into())),
        EngineError::Mls(MlsError::CorruptState("test")),
    ];
    let not = [
        EngineError::Invite(InviteError::BadAnswer),
        EngineError::Mls(MlsError::Rejected("test".into())),
        EngineError::Mls(MlsError::NotMember),
        EngineError::Mls(MlsError::BufferFull),
        EngineError::Payload(PayloadError::TooLong),
        EngineError::Route(RouteError::UnknownGateway),
        EngineError::NotReady("x".into(), "test"),
        EngineError::NoNetwork,
        EngineError::GatewayMissing,
        EngineError::Geometry("test"),
    ];
    assert!(fatal.iter().all(EngineError::is_fatal));
    assert!(!not.iter().any(EngineError::is_fatal));
    // One part's error that is not fatal is counted and the operation goes on; a fatal one is
    // handed back.
    let mut w = World::new(17, 0.0, &[1]);
    let e = w.clients[0].e();
    for x in not {
        assert!(matches!(e.go_on::<()>("test", Err(x)), Ok(None)));
    }
    assert_eq!(e.stats().failed, 10);
    assert!(e.go_on::<()>("test", Err(EngineError::Corrupt("test"))).is_err());
    assert_eq!(e.go_on("test", Ok(7)).unwrap(), Some(7));
}
