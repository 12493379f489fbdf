use super::*;

#[test]
fn a_peer_over_its_cap_is_refused_until_one_of_its_connections_ends() {
    let peers = Peers::new(NonZeroU32::new(2), Counter::default());
    let a = IpAddr::from([192, 0, 2, 1]);
    let b = IpAddr::from([192, 0, 2, 2]);
    let first = peers.admit(a).expect("1 of 2");
    let _second = peers.admit(a).expect("2 of 2");
    assert!(peers.admit(a).is_err(), "3 of 2");
    assert!(peers.admit(b).is_ok(), "another peer");
    drop(first);
    assert!(peers.admit(a).is_ok(), "given back");
    assert_eq!(peers.refused.get(), 1);
    let uncapped = Peers::new(None, Counter::default());
    assert!(matches!(uncapped.admit(a), Ok(None)));
}
