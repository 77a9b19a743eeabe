//! The packet-layer demo: messages through five in-process hops with SURB acknowledgements
//! (no network). Kept as `qanat demo --packets-only`.

use std::time::Instant;

use anyhow::{Context, Result, bail};
use qanat_packet::{
    Geometry, MailboxId, NodeDelay, NodeId, PathHop, RoutingCommand, Scheme, SecretKey, Sphinx, SurbId,
};

pub(crate) fn demo(scheme: &str, messages: usize) -> Result<()> {
    let scheme = Scheme::from_name(scheme)
        .with_context(|| format!("unknown scheme {scheme:?}: use x25519-nike, x25519-kem or xwing"))?;
    let mut rng = rand::rng();
    let sphinx = Sphinx::new(Geometry::default_for(scheme));
    let g = sphinx.geometry();
    let names = ["gateway A", "mix layer 1", "mix layer 2", "mix layer 3", "gateway B"];
    let nodes: Vec<(NodeId, SecretKey)> =
        (0..names.len()).map(|i| (NodeId([i as u8; 32]), SecretKey::generate(scheme, &mut rng))).collect();
    let path = |recipient: [u8; 32], surb: Option<[u8; 16]>| -> Vec<PathHop> {
        nodes
            .iter()
            .enumerate()
            .map(|(i, (id, key))| PathHop {
                id: *id,
                public_key: key.public_key(),
                commands: if i + 1 == nodes.len() {
                    let mut c = vec![RoutingCommand::Recipient(MailboxId(recipient))];
                    c.extend(surb.map(|s| RoutingCommand::SurbReply(SurbId(s))));
                    c
                } else {
                    vec![RoutingCommand::NodeDelay(NodeDelay { delay_ms: 50 })]
                },
            })
            .collect()
    };
    println!(
        "packet-layer demo: scheme {}, {}-byte packets, {} hops ({})",
        scheme.name(),
        g.packet_len(),
        names.len(),
        names.join(" -> ")
    );
    let mut latencies = Vec::with_capacity(messages);
    let mut delivered = 0;
    for n in 0..messages {
        let text = format!("message {n} from Alice to Bob");
        let start = Instant::now();
        let mut payload = vec![0u8; g.forward_payload_len()];
        payload[..text.len()].copy_from_slice(text.as_bytes());
        let mut pkt = sphinx.new_packet(&mut rng, &path([0xb0; 32], None), &payload)?;
        let (surb, keys) = sphinx.new_surb(&mut rng, &path([0xa1; 32], Some([n as u8; 16])))?;
        let mut got = None;
        for (i, (_, key)) in nodes.iter().enumerate() {
            let out =
                sphinx.unwrap(key, &mut pkt).with_context(|| format!("{} rejected the packet", names[i]))?;
            if !out.is_forward() {
                got = out.payload(&pkt).map(<[u8]>::to_vec);
            }
        }
        let Some(got) = got else { bail!("message {n} was not delivered") };
        // Bob answers with the SURB; only Alice can decrypt the answer.
        let mut ack = vec![0u8; g.forward_payload_len()];
        ack[..3].copy_from_slice(b"ack");
        let (mut reply, _) = sphinx.new_packet_from_surb(&surb, &ack)?;
        let mut answered = None;
        for (_, key) in &nodes {
            let out = sphinx.unwrap(key, &mut reply)?;
            if !out.is_forward() {
                answered = out.payload(&reply).map(|p| sphinx.decrypt_surb_payload(p, &keys)).transpose()?;
            }
        }
        let ms = start.elapsed().as_secs_f64() * 1000.0;
        if got == payload && answered.as_deref().is_some_and(|a| a.starts_with(b"ack")) {
            delivered += 1;
            latencies.push(ms);
            println!("Bob received {text:?} and Alice got his acknowledgement ({ms:.2} ms of computation)");
        }
    }
    latencies.sort_by(f64::total_cmp);
    let pct =
        |p: f64| latencies.get(((latencies.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or(0.0);
    println!(
        "demo: {delivered}/{messages} messages delivered, p50 {:.2} ms, p99 {:.2} ms",
        pct(0.5),
        pct(0.99)
    );
    if delivered != messages {
        bail!("{} messages were lost", messages - delivered);
    }
    Ok(())
}
