//! Seeded random draws for the budget benchmarks: a fixed sequence and a Zipf (s = 1) over it,
//! the same in every run, so that the workloads and their counts repeat.

/// xorshift64*: a fixed sequence, the same in every run.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub(crate) fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Draws 0..n with probability proportional to 1 / (k + 1) (Zipf, s = 1).
pub(crate) struct Zipf(Vec<f64>);

impl Zipf {
    pub(crate) fn new(n: usize) -> Self {
        let mut sum = 0.0;
        Zipf(
            (0..n)
                .map(|k| {
                    sum += 1.0 / (k + 1) as f64;
                    sum
                })
                .collect(),
        )
    }

    pub(crate) fn draw(&self, rng: &mut Rng) -> usize {
        let x = rng.unit() * self.0.last().copied().unwrap_or(0.0);
        self.0.partition_point(|c| *c < x).min(self.0.len() - 1)
    }
}
