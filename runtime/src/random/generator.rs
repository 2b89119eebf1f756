//! The generator: ChaCha20 (RustCrypto's `chacha20`) keyed by a 256-bit seed, with fast key
//! erasure, and reseeding that hashes new material with the current key.

use chacha20::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use sha2::{Digest, Sha256};

pub struct Generator {
    rng: ChaCha20Rng,
}

impl Generator {
    pub fn new(seed: [u8; 32]) -> Generator {
        Generator { rng: ChaCha20Rng::from_seed(seed) }
    }

    /// Fills `dest`, then replaces the key with fresh output ("fast key erasure", Bernstein
    /// 2017), so that the state a memory leak shows later does not give away what was drawn
    /// before.
    pub fn fill(&mut self, dest: &mut [u8]) {
        self.keystream(dest);
        let mut key = [0; 32];
        self.keystream(&mut key);
        self.rng = ChaCha20Rng::from_seed(key);
    }

    /// The next bytes of the keystream, a word at a time: `Rng::fill_bytes` carries an
    /// assertion whose failure path brought core's Debug formatting into every image (1.7 KiB).
    fn keystream(&mut self, dest: &mut [u8]) {
        for chunk in dest.chunks_mut(8) {
            chunk.copy_from_slice(&self.rng.next_u64().to_le_bytes()[..chunk.len()]);
        }
    }

    /// Mixes `material` (event timings, hardware words) into the key: the new key is
    /// SHA-256 of the generator's output and the material, so that the result is no weaker
    /// than either.
    pub fn reseed(&mut self, material: &[u8]) {
        let mut key = [0; 32];
        self.keystream(&mut key);
        self.rng =
            ChaCha20Rng::from_seed(Sha256::new().chain_update(key).chain_update(material).finalize().into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draw(g: &mut Generator) -> [u8; 32] {
        let mut out = [0; 32];
        g.fill(&mut out);
        out
    }

    #[test]
    fn generators_seeded_differently_differ() {
        let mut seed = [7; 32];
        let a = draw(&mut Generator::new(seed));
        seed[31] ^= 1;
        assert_ne!(a, draw(&mut Generator::new(seed)));
    }

    #[test]
    fn generators_seeded_alike_agree_until_one_is_reseeded() {
        let (mut a, mut b) = (Generator::new([3; 32]), Generator::new([3; 32]));
        assert_eq!(draw(&mut a), draw(&mut b));
        b.reseed(&12345u64.to_le_bytes());
        assert_ne!(draw(&mut a), draw(&mut b));
    }

    #[test]
    fn reseeding_with_different_material_gives_different_output() {
        let (mut a, mut b) = (Generator::new([3; 32]), Generator::new([3; 32]));
        a.reseed(&[1]);
        b.reseed(&[2]);
        assert_ne!(draw(&mut a), draw(&mut b));
    }

    #[test]
    fn successive_draws_differ_and_are_not_the_chacha20_keystream_continued() {
        let mut g = Generator::new([9; 32]);
        let first = draw(&mut g);
        let second = draw(&mut g);
        assert_ne!(first, second);
        // Without key erasure, the second draw would be the keystream's next 32 bytes.
        let mut plain = ChaCha20Rng::from_seed([9; 32]);
        let mut stream = [0; 64];
        plain.fill_bytes(&mut stream);
        assert_eq!(first, stream[..32]);
        assert_ne!(second, stream[32..]);
    }
}
