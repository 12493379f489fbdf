use super::*;

#[test]
fn one_client_holds_at_most_its_share_of_the_queue() {
    let places = Places::new(4, Some(2));
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
