use super::*;

#[test]
fn one_client_holds_at_most_its_share_of_the_queue() {
    let places = Places::new(4, vec![Some(2)]);
    let (a, b) = (ClientKey(1, 1, 0), ClientKey(2, 2, 0));
    let first = places.take(a).expect("a place");
    let _second = places.take(a).expect("a second place");
    assert_eq!(places.take(a).err(), Some(NoPlace::ClientFull(2)));
    // Another client still finds room, up to the queue's size.
    let _b1 = places.take(b).expect("b's place");
    let _b2 = places.take(b).expect("b's second place");
    assert_eq!(places.take(ClientKey(3, 3, 0)).err(), Some(NoPlace::Full));
    // A place given back is free again.
    drop(first);
    assert!(places.take(a).is_ok());
}

#[test]
fn each_tenant_class_holds_its_own_share_of_the_queue() {
    // The default class may hold 1 place, class 1 three; class 2 has no cap of its own.
    let places = Places::new(10, vec![Some(1), Some(3), None]);
    let (default, premium, other) = (ClientKey(1, 1, 0), ClientKey(2, 2, 1), ClientKey(3, 3, 2));
    let _d = places.take(default).expect("a place");
    assert_eq!(places.take(default).err(), Some(NoPlace::ClientFull(1)));
    let _p: Vec<_> = (0..3)
        .map(|_| places.take(premium).expect("a place"))
        .collect();
    assert_eq!(places.take(premium).err(), Some(NoPlace::ClientFull(3)));
    // No cap of its own: the queue's size alone.
    let others: Vec<_> = (0..6)
        .map(|_| places.take(other).expect("a place"))
        .collect();
    assert_eq!(places.take(other).err(), Some(NoPlace::Full));
    // A class the route does not have: the default's cap.
    let stranger = ClientKey(4, 4, 9);
    drop(others);
    let _s = places.take(stranger).expect("a place");
    assert_eq!(places.take(stranger).err(), Some(NoPlace::ClientFull(1)));
}
