use super::*;
use crate::master;
use crate::rdata::RData;
use alloc::format;
use alloc::string::{String, ToString};

pub const ZONE: &str = r#"
$ORIGIN example.com.
$TTL 3600
@        SOA   ns1 hostmaster 1 7200 3600 1209600 300
         NS    ns1
         NS    ns2
         MX    10 mail
ns1      A     192.0.2.1
ns2      A     192.0.2.2
mail     A     192.0.2.3
www      A     192.0.2.10
         AAAA  2001:db8::10
alias    CNAME www
chain    CNAME alias
loop1    CNAME loop2
loop2    CNAME loop1
dangling CNAME nothere
out      CNAME www.example.org.
*.wild   TXT   "wildcard"
*.wild   MX    10 mail
sub      NS    ns.sub
ns.sub   A     192.0.2.53
a.b.c    A     192.0.2.20
"#;

fn catalog() -> Catalog {
    let mut text = String::from(ZONE);
    // 20 strings of 100 octets: about 2 KB, more than any UDP limit.
    text.push_str("big TXT");
    for _ in 0..20 {
        text.push_str(&format!(" \"{}\"", "x".repeat(100)));
    }
    Catalog::new(alloc::vec![master::parse("test.zone", &text).unwrap()]).unwrap()
}

/// A query for `name`/`qtype` with ID 0xbeef and RD set; `opt` adds an OPT
/// record with this payload size and version.
fn query(name: &str, qtype: u16, opt: Option<(u16, u8)>) -> Vec<u8> {
    let mut w = Writer::new();
    w.bytes(&[0xbe, 0xef, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, u8::from(opt.is_some())]);
    for label in name.split('.').filter(|l| !l.is_empty()) {
        w.u8(label.len() as u8);
        w.bytes(label.as_bytes());
    }
    w.u8(0);
    w.u16(qtype);
    w.u16(CLASS_IN);
    if let Some((payload, version)) = opt {
        w.bytes(&[0, 0, 41]);
        w.u16(payload);
        w.u32(u32::from(version) << 16);
        w.u16(0);
    }
    w.finish().unwrap()
}

/// A reply, decoded: flags, rcode (extended included) and each section as
/// `owner type ttl rdata` lines.
#[derive(Debug)]
struct Decoded {
    flags: u16,
    rcode: u16,
    question: String,
    answer: Vec<String>,
    authority: Vec<String>,
    additional: Vec<String>,
}

fn decode(reply: &[u8]) -> Decoded {
    let p = Packet::new_checked(reply).unwrap();
    assert_eq!(p.id(), 0xbeef);
    let mut r = Reader::new(reply, HEADER_LEN);
    let mut question = String::new();
    if p.qdcount() == 1 {
        let q = Question::parse(&mut r).unwrap();
        question = format!("{} {}", q.name, q.qtype);
    }
    let mut rcode = p.flags() & 0xf;
    let mut section = |n: u16, rcode: &mut u16| {
        (0..n)
            .map(|_| {
                let owner = r.name().unwrap();
                let (rtype, _class, ttl, len) =
                    (r.u16().unwrap(), r.u16().unwrap(), r.u32().unwrap(), r.u16().unwrap());
                if rtype == types::OPT {
                    *rcode |= ((ttl >> 24) as u16) << 4;
                    r.bytes(len.into()).unwrap();
                    return format!("OPT {_class} {ttl:#x}");
                }
                let rdata = match RData::parse(rtype, &mut r, len.into()).unwrap() {
                    RData::Name(n) => n.to_string(),
                    RData::Mx { preference, exchange } => format!("{preference} {exchange}"),
                    RData::Soa { mname, serial, minimum, .. } => format!("{mname} {serial} {minimum}"),
                    RData::Srv { target, .. } => target.to_string(),
                    RData::Opaque(b) => format!("{b:?}"),
                };
                format!("{owner} {rtype} {ttl} {rdata}")
            })
            .collect::<Vec<_>>()
    };
    let answer = section(p.ancount(), &mut rcode);
    let authority = section(p.nscount(), &mut rcode);
    let additional = section(p.arcount(), &mut rcode);
    assert!(r.is_empty(), "no bytes after the last record");
    Decoded { flags: p.flags(), rcode, question, answer, authority, additional }
}

fn ask(name: &str, qtype: u16) -> Decoded {
    decode(&respond(&catalog(), &query(name, qtype, None), Transport::Udp).unwrap())
}

const SOA: &str = "example.com. 6 300 ns1.example.com. 1 300";

#[test]
fn exact_match_is_authoritative_and_echoes_the_query() {
    let d = ask("WwW.Example.COM", types::A);
    assert_eq!(d.rcode, rcode::NOERROR);
    assert_eq!(d.flags & (flags::QR | flags::AA | flags::RD | flags::TC), flags::QR | flags::AA | flags::RD);
    assert_eq!(d.question, "WwW.Example.COM. 1");
    assert_eq!(d.answer, ["WwW.Example.COM. 1 3600 [192, 0, 2, 10]"]);
    assert!(d.authority.is_empty() && d.additional.is_empty());
}

#[test]
fn cname_chain_is_followed_inside_the_zone() {
    let d = ask("chain.example.com", types::A);
    assert_eq!(
        d.answer,
        [
            "chain.example.com. 5 3600 alias.example.com.",
            "alias.example.com. 5 3600 www.example.com.",
            "www.example.com. 1 3600 [192, 0, 2, 10]"
        ]
    );
    assert_eq!(ask("chain.example.com", types::CNAME).answer.len(), 1, "a CNAME query gets the CNAME");
    let out = ask("out.example.com", types::A);
    assert_eq!((out.rcode, out.answer.len(), out.authority.len()), (rcode::NOERROR, 1, 0));
    let looped = ask("loop1.example.com", types::A);
    assert_eq!((looped.rcode, looped.answer.len()), (rcode::NOERROR, 2));
}

#[test]
fn cname_to_a_missing_name_is_nxdomain() {
    // RFC 6604 §3: the rcode is that of the last name in the chain.
    let d = ask("dangling.example.com", types::A);
    assert_eq!(d.rcode, rcode::NXDOMAIN);
    assert_eq!(d.answer, ["dangling.example.com. 5 3600 nothere.example.com."]);
    assert_eq!(d.authority, [SOA]);
}

#[test]
fn delegation_is_a_referral_with_glue() {
    for name in ["sub.example.com", "deep.below.sub.example.com"] {
        let d = ask(name, types::A);
        assert_eq!(d.rcode, rcode::NOERROR);
        assert_eq!(d.flags & flags::AA, 0, "a referral is not authoritative");
        assert!(d.answer.is_empty());
        assert_eq!(d.authority, ["sub.example.com. 2 3600 ns.sub.example.com."]);
        assert_eq!(d.additional, ["ns.sub.example.com. 1 3600 [192, 0, 2, 53]"]);
    }
}

#[test]
fn wildcards_synthesise_at_the_query_name() {
    let d = ask("Anything.wild.example.com", types::TXT);
    assert_eq!(d.flags & flags::AA, flags::AA);
    assert_eq!(d.answer, ["Anything.wild.example.com. 16 3600 [8, 119, 105, 108, 100, 99, 97, 114, 100]"]);
    let mx = ask("x.y.wild.example.com", types::MX);
    assert_eq!(mx.answer, ["x.y.wild.example.com. 15 3600 10 mail.example.com."]);
    let nodata = ask("x.wild.example.com", types::A);
    assert_eq!((nodata.rcode, nodata.answer.len()), (rcode::NOERROR, 0));
    assert_eq!(nodata.authority, [SOA]);
    // RFC 4592 §2.2.2: an empty non-terminal stops a wildcard above it.
    assert_eq!(ask("b.c.example.com", types::A).rcode, rcode::NOERROR);
    assert_eq!(ask("x.b.c.example.com", types::A).rcode, rcode::NXDOMAIN);
}

#[test]
fn negative_answers_carry_the_soa() {
    let nx = ask("nope.example.com", types::A);
    assert_eq!((nx.rcode, nx.flags & flags::AA), (rcode::NXDOMAIN, flags::AA));
    assert_eq!(nx.authority, [SOA], "TTL is min(SOA TTL, MINIMUM)");
    let nodata = ask("www.example.com", types::TXT);
    assert_eq!((nodata.rcode, nodata.answer.len()), (rcode::NOERROR, 0));
    assert_eq!(nodata.authority, [SOA]);
}

#[test]
fn outside_our_zones_is_refused() {
    let d = ask("www.example.org", types::A);
    assert_eq!((d.rcode, d.flags & flags::AA), (rcode::REFUSED, 0));
    assert_eq!(d.question, "www.example.org. 1");
    let axfr = query("example.com", types::AXFR, None);
    let udp = decode(&respond(&catalog(), &axfr, Transport::Udp).unwrap());
    assert_eq!(udp.rcode, rcode::NOTIMP, "RFC 5936 §4.2: no AXFR over UDP");
    let tcp = decode(&respond(&catalog(), &axfr, Transport::Tcp).unwrap());
    assert_eq!(tcp.rcode, rcode::REFUSED);
    assert_eq!(ask("example.com", types::IXFR).rcode, rcode::REFUSED);
}

/// The info-code of the Extended DNS Error in the reply to `q` (RFC 8914).
fn extended_error(q: &[u8]) -> Option<u16> {
    let reply = respond(&catalog(), q, Transport::Udp).unwrap();
    let at = reply.windows(4).position(|w| w == [0, 15, 0, 2])?;
    Some(u16::from_be_bytes([reply[at + 4], reply[at + 5]]))
}

#[test]
fn refusals_say_why_with_edns() {
    let edns = Some((1232, 0));
    assert_eq!(extended_error(&query("www.example.org", types::A, edns)), Some(ede::NOT_AUTHORITATIVE));
    assert_eq!(extended_error(&query("example.com", types::IXFR, edns)), Some(ede::PROHIBITED));
    let mut chaos = query("example.com", types::A, edns);
    let class_at = chaos.len() - 11 - 2;
    chaos[class_at + 1] = 3;
    assert_eq!(extended_error(&chaos), Some(ede::NOT_SUPPORTED));
    let mut version = query("VERSION.bind", types::TXT, edns);
    version[class_at - "example.com".len() + "VERSION.bind".len() + 1] = 3;
    assert_eq!(extended_error(&version), Some(ede::PROHIBITED));
    assert_eq!(extended_error(&query("www.example.org", types::A, None)), None, "no OPT, no EDE");
    let d = decode(&respond(&catalog(), &query("www.example.org", types::A, edns), Transport::Udp).unwrap());
    assert_eq!(d.additional, ["OPT 1232 0x0"], "one OPT record carries it");
}

#[test]
fn class_any_is_answered_from_in_without_aa() {
    let mut q = query("www.example.com", types::A, None);
    let len = q.len();
    q[len - 1] = 255;
    let d = decode(&respond(&catalog(), &q, Transport::Udp).unwrap());
    assert_eq!((d.rcode, d.flags & flags::AA), (rcode::NOERROR, 0));
    assert_eq!(d.answer, ["www.example.com. 1 3600 [192, 0, 2, 10]"]);
}

#[test]
fn mx_answer_is_minimal() {
    let d = ask("example.com", types::MX);
    assert_eq!(d.answer, ["example.com. 15 3600 10 mail.example.com."]);
    assert!(d.additional.is_empty(), "addresses go in the additional section of referrals only");
}

#[test]
fn any_gets_one_rrset() {
    let d = ask("www.example.com", types::ANY);
    assert_eq!(d.answer.len(), 1, "RFC 8482 §4.2");
}

#[test]
fn edns_is_echoed_with_our_payload_size() {
    let d = decode(
        &respond(&catalog(), &query("www.example.com", types::A, Some((4096, 0))), Transport::Udp).unwrap(),
    );
    assert_eq!(d.rcode, rcode::NOERROR);
    assert_eq!(d.additional, ["OPT 1232 0x0"]);
}

#[test]
fn unknown_edns_version_is_badvers() {
    let d = decode(
        &respond(&catalog(), &query("www.example.com", types::A, Some((4096, 1))), Transport::Udp).unwrap(),
    );
    assert_eq!(d.rcode, rcode::BADVERS);
    assert!(d.answer.is_empty());
    assert_eq!(d.additional, ["OPT 1232 0x1000000"]);
}

#[test]
fn malformed_opt_is_formerr() {
    let mut bad_option = query("www.example.com", types::A, Some((4096, 0)));
    let len = bad_option.len();
    bad_option[len - 2..].copy_from_slice(&[0, 4]);
    bad_option.extend_from_slice(&[0, 10, 0, 9]);
    let mut two_opts = query("www.example.com", types::A, Some((4096, 0)));
    let opt = two_opts[two_opts.len() - 11..].to_vec();
    two_opts.extend_from_slice(&opt);
    two_opts[11] = 2;
    let mut not_root = query("www.example.com", types::A, None);
    not_root[11] = 1;
    not_root.extend_from_slice(&[1, b'a', 0, 0, 41, 16, 0, 0, 0, 0, 0, 0, 0]);
    for q in [bad_option, two_opts, not_root] {
        let d = decode(&respond(&catalog(), &q, Transport::Udp).unwrap());
        assert_eq!(d.rcode, rcode::FORMERR, "{q:?}");
        assert_eq!(d.question, "", "a FORMERR reply has only the header");
    }
}

#[test]
fn truncation_sets_tc() {
    let cat = catalog();
    let plain = decode(&respond(&cat, &query("big.example.com", types::TXT, None), Transport::Udp).unwrap());
    assert_eq!(plain.flags & flags::TC, flags::TC);
    assert!(plain.answer.is_empty());
    let edns = respond(&cat, &query("big.example.com", types::TXT, Some((4096, 0))), Transport::Udp).unwrap();
    assert!(edns.len() <= usize::from(MAX_UDP_PAYLOAD));
    assert_eq!(decode(&edns).flags & flags::TC, flags::TC);
    let tcp = decode(&respond(&cat, &query("big.example.com", types::TXT, None), Transport::Tcp).unwrap());
    assert_eq!((tcp.flags & flags::TC, tcp.answer.len()), (0, 1));
    // A small answer with EDNS and a tiny advertised size still gets 512.
    let small =
        decode(&respond(&cat, &query("www.example.com", types::A, Some((100, 0))), Transport::Udp).unwrap());
    assert_eq!((small.flags & flags::TC, small.answer.len()), (0, 1));
}

#[test]
fn a_referral_whose_in_domain_glue_does_not_fit_sets_tc() {
    let mut text = String::from(ZONE);
    // Twenty name servers with both addresses, below the cut (glue) and,
    // for `near`, beside it in our own data (not glue).
    for i in 0..20 {
        for (cut, hosts) in [("many", "many"), ("near", "near-hosts")] {
            text.push_str(&format!(
                "{cut} NS ns{i}.{hosts}\nns{i}.{hosts} A 192.0.2.{i}\nns{i}.{hosts} AAAA 2001:db8::{i}\n"
            ));
        }
    }
    let cat = Catalog::new(alloc::vec![master::parse("test.zone", &text).unwrap()]).unwrap();
    let referral =
        |name: &str, transport| decode(&respond(&cat, &query(name, types::A, None), transport).unwrap());
    let udp = referral("host.many.example.com", Transport::Udp);
    assert_eq!(udp.authority.len(), 20);
    assert!(udp.additional.len() < 40, "the test needs glue that does not fit in 512 bytes");
    assert_eq!(udp.flags & flags::TC, flags::TC, "RFC 9471 §3: missing in-domain glue sets TC");
    let tcp = referral("host.many.example.com", Transport::Tcp);
    assert_eq!((tcp.flags & flags::TC, tcp.additional.len()), (0, 40));
    let beside = referral("host.near.example.com", Transport::Udp);
    assert!(beside.additional.len() < 40);
    assert_eq!(beside.flags & flags::TC, 0, "addresses outside the cut are not glue");
}

#[test]
fn notimp_for_another_opcode_carries_opt_when_the_query_had_one() {
    let cat = catalog();
    let mut with_opt = query("www.example.com", types::A, Some((1232, 0)));
    with_opt[2] |= 2 << 3; // opcode 2 (STATUS)
    let d = decode(&respond(&cat, &with_opt, Transport::Udp).unwrap());
    assert_eq!(d.rcode, rcode::NOTIMP);
    assert_eq!(d.additional, ["OPT 1232 0x0"], "RFC 6891 §7: an OPT in the query gets one back");
    let mut without = query("www.example.com", types::A, None);
    without[2] |= 2 << 3;
    let d = decode(&respond(&cat, &without, Transport::Udp).unwrap());
    assert_eq!((d.rcode, d.additional.len()), (rcode::NOTIMP, 0));
}

#[test]
fn malformed_queries() {
    let cat = catalog();
    let mut status = query("www.example.com", types::A, None);
    status[2] = 0x10; // opcode 2 (STATUS)
    assert_eq!(decode(&respond(&cat, &status, Transport::Udp).unwrap()).rcode, rcode::NOTIMP);
    let mut two = query("www.example.com", types::A, None);
    two[5] = 2;
    assert_eq!(decode(&respond(&cat, &two, Transport::Udp).unwrap()).rcode, rcode::FORMERR);
    let q = query("www.example.com", types::A, None);
    assert_eq!(decode(&respond(&cat, &q[..q.len() - 1], Transport::Udp).unwrap()).rcode, rcode::FORMERR);
    let mut response = q.clone();
    response[2] |= 0x80;
    assert_eq!(respond(&cat, &response, Transport::Udp), None, "responses are never answered");
    assert_eq!(respond(&cat, &q[..11], Transport::Udp), None);
    // Meta types with no data: NODATA, as any type the name lacks.
    for qtype in [types::OPT, types::MAILA, types::MAILB] {
        let d = ask("www.example.com", qtype);
        assert_eq!((d.rcode, d.answer.len()), (rcode::NOERROR, 0), "{qtype}");
        assert_eq!(d.authority, [SOA]);
    }
}
