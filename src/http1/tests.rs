use super::*;

/// The places of `name: value` fields written one after another in `head`.
fn fields(head: &[u8]) -> Vec<Place> {
    let mut places = Vec::new();
    let mut at = 0;
    for line in head.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let colon = line.iter().position(|&b| b == b':').expect("colon");
        places.push(Place {
            name: at..at + colon,
            value: at + colon + 2..at + line.len(),
        });
        at += line.len() + 1;
    }
    places
}

#[test]
fn a_recycled_map_comes_back_empty_for_the_next_head() {
    let head = Bytes::from_static(b"a: 1\nb: 2\n");
    let mut map = header_map(&head, &fields(&head), 30).expect("map");
    let grown = map.capacity();
    map.insert("x-added", HeaderValue::from_static("3"));
    recycle(map);
    let next = header_map(&head, &fields(&head), 0).expect("map");
    // Its memory is the first map's; none of its fields is left.
    assert_eq!(next.capacity(), grown);
    assert_eq!(next.len(), 2);
    assert_eq!(next["a"], "1");
    assert!(next.get("x-added").is_none());
}

#[test]
fn a_map_grown_large_is_not_kept() {
    let head = Bytes::from_static(b"a: 1\n");
    let large = header_map(&head, &fields(&head), 2 * SPARE_MAX_FIELDS).expect("map");
    assert!(large.capacity() > SPARE_MAX_FIELDS);
    recycle(large);
    let next = header_map(&head, &fields(&head), 0).expect("map");
    assert!(next.capacity() <= SPARE_MAX_FIELDS, "{}", next.capacity());
}
