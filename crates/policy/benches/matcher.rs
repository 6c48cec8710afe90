//! Criterion benchmarks for host-name parsing and `DomainSet` lookups.
//!
//! The set holds 100,000 category-list-like subtree patterns plus a few exact ones, which is
//! enough to make the hash table far larger than cache; lookup cost does not otherwise depend on
//! the number of patterns. `perf_one_million_patterns` in `src/domain/tests.rs` measures the
//! 1M-pattern build time and memory.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use sluice_policy::domain::{DomainSet, DomainSetBuilder, Pattern};
use sluice_policy::name::{DomainName, Host};

/// Deterministic pseudo-random generator (xorshift64*), so benches need no `rand`.
struct XorShift(u64);

impl XorShift {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n as u64) as usize
    }
}

fn list_name(rng: &mut XorShift) -> String {
    const TLDS: [&str; 8] = ["com", "net", "org", "de", "fr", "co.uk", "info", "ru"];
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut s = String::new();
    for _ in 0..1 + rng.below(3) {
        for _ in 0..3 + rng.below(10) {
            s.push(char::from(ALPHABET[rng.below(ALPHABET.len())]));
        }
        s.push('.');
    }
    s.push_str(TLDS[rng.below(TLDS.len())]);
    s
}

fn build(lines: &[String]) -> DomainSet<u32> {
    let mut b = DomainSetBuilder::with_capacity(lines.len());
    for (i, line) in (0u32..).zip(lines) {
        let _ = b.insert_lenient(line, i);
    }
    b.build()
}

fn bench_lookup(c: &mut Criterion) {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let lines: Vec<String> = (0..100_000).map(|_| list_name(&mut rng)).collect();
    let set = build(&lines);
    let hits: Vec<DomainName> = (0..1024)
        .map(|_| DomainName::parse(&format!("www.{}", lines[rng.below(lines.len())])))
        .collect::<Result<_, _>>()
        .unwrap_or_default();
    let misses: Vec<DomainName> = (0..1024)
        .map(|_| DomainName::parse(&format!("a.b.{}", list_name(&mut rng))))
        .collect::<Result<_, _>>()
        .unwrap_or_default();

    let mut group = c.benchmark_group("domain_set_100k");
    let mut i = 0;
    group.bench_function("lookup_hit", |b| {
        b.iter(|| {
            i = (i + 1) % hits.len();
            black_box(set.lookup(black_box(&hits[i])).is_some())
        })
    });
    group.bench_function("lookup_miss", |b| {
        b.iter(|| {
            i = (i + 1) % misses.len();
            black_box(set.lookup(black_box(&misses[i])).is_some())
        })
    });
    group.finish();
}

fn bench_build(c: &mut Criterion) {
    let mut rng = XorShift(42);
    let lines: Vec<String> = (0..10_000).map(|_| list_name(&mut rng)).collect();
    let mut group = c.benchmark_group("domain_set_build");
    group.sample_size(20);
    group.bench_function("insert_lenient_10k", |b| {
        b.iter(|| build(black_box(&lines)))
    });
    group.bench_function("pattern_parse_10k", |b| {
        b.iter(|| {
            let mut set = DomainSetBuilder::with_capacity(lines.len());
            for (i, line) in lines.iter().enumerate() {
                if let Ok(p) = Pattern::parse(&format!("*.{line}")) {
                    let _ = set.insert(p, i);
                }
            }
            set.build()
        })
    });
    group.finish();
}

fn bench_parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("host_parse");
    for (label, input) in [
        ("ascii_lower", "www.example.co.uk"),
        ("ascii_upper_dot", "WWW.EXAMPLE.CO.UK."),
        ("a_label", "www.xn--bcher-kva.test"),
        ("u_label", "www.bücher.test"),
        ("ipv4_hex", "0x7f000001"),
        ("ipv6", "[2001:db8::1]"),
    ] {
        group.bench_function(label, |b| b.iter(|| Host::parse(black_box(input)).is_ok()));
    }
    group.finish();
}

criterion_group!(benches, bench_lookup, bench_build, bench_parse);
criterion_main!(benches);
