//! The confirmation phrase of an SSH sign-in link: three words the
//! terminal shows and the web page repeats, so the user can check that the
//! page in front of them is for their own terminal and not a link someone
//! sent them. It is not a secret (the token in the URL is): 24 bits are
//! plenty to tell two terminals apart at a glance.

/// 256 short, common English words that are hard to confuse with each
/// other when read aloud or at a glance (no homophones, no two spellings),
/// so one random byte picks one word uniformly.
const WORDS: [&str; 256] = [
    "acorn", "amber", "anchor", "apple", "arrow", "atlas", "autumn", "badge", "bagel", "bamboo",
    "banjo", "barley", "basil", "basket", "beacon", "beaver", "berry", "birch", "bison", "blanket",
    "bloom", "bottle", "breeze", "brick", "bridge", "brook", "bucket", "butter", "cabin", "cactus",
    "camel", "candle", "canoe", "canyon", "carbon", "carpet", "castle", "cedar", "cello", "chalk",
    "cherry", "cider", "circle", "citrus", "clover", "cobalt", "cocoa", "comet", "copper", "coral",
    "cotton", "crane", "crater", "cricket", "crystal", "daisy", "delta", "desert", "dolphin",
    "dragon", "drum", "eagle", "easel", "echo", "elbow", "ember", "falcon", "feather", "fern",
    "fiddle", "field", "fig", "flame", "flint", "forest", "fossil", "fox", "galaxy", "garden",
    "garlic", "gecko", "ginger", "glacier", "globe", "goose", "granite", "grape", "gravel",
    "hammer", "hazel", "helmet", "heron", "hill", "honey", "horizon", "husky", "igloo", "island",
    "ivory", "jacket", "jade", "jasmine", "jelly", "jigsaw", "jungle", "kettle", "kiwi", "koala",
    "ladder", "lagoon", "lantern", "lemon", "lilac", "lily", "lime", "linen", "lion", "lizard",
    "llama", "lobster", "locket", "lotus", "magnet", "mango", "maple", "marble", "meadow", "melon",
    "meteor", "mint", "mirror", "mitten", "monkey", "moose", "mosaic", "moss", "muffin", "nectar",
    "nickel", "nutmeg", "oak", "oasis", "ocean", "olive", "onion", "orange", "orbit", "orchid",
    "otter", "owl", "oyster", "paddle", "palm", "panda", "paper", "parrot", "peach", "peanut",
    "pebble", "pecan", "pelican", "pepper", "piano", "pickle", "pigeon", "pillow", "pine",
    "planet", "plum", "pocket", "pony", "poppy", "potato", "prairie", "pumpkin", "puzzle",
    "quartz", "quill", "rabbit", "raccoon", "radar", "radish", "rainbow", "raven", "ribbon",
    "river", "robin", "rocket", "ruby", "saddle", "saffron", "salmon", "sandal", "satin", "scarf",
    "shell", "silver", "sketch", "sled", "snail", "sparrow", "spider", "spinach", "spruce",
    "squash", "squid", "stone", "storm", "summit", "sunset", "swan", "tablet", "tango", "teapot",
    "thistle", "thunder", "tiger", "timber", "tomato", "topaz", "torch", "tulip", "tundra",
    "turnip", "turtle", "tunnel", "valley", "velvet", "violet", "violin", "volcano", "waffle",
    "walnut", "walrus", "wagon", "willow", "window", "winter", "wizard", "wombat", "zebra", "zinc",
    "orchard", "beetle", "button", "cobra", "donkey", "hamster", "iris", "juniper", "kayak",
    "marsh", "noodle", "pasta", "sponge", "tractor",
];

/// The phrase for three random bytes: one word per byte, joined by `-`.
pub(crate) fn phrase(bytes: [u8; 3]) -> String {
    let [a, b, c] = bytes.map(word);
    format!("{a}-{b}-{c}")
}

/// The word a byte picks.
fn word(byte: u8) -> &'static str {
    WORDS.get(usize::from(byte)).copied().unwrap_or("oak")
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::{WORDS, phrase};
    use std::collections::HashSet;

    #[test]
    fn words_are_distinct_short_and_lowercase() {
        let distinct: HashSet<&str> = WORDS.iter().copied().collect();
        assert_eq!(distinct.len(), 256, "a word appears twice");
        for w in WORDS {
            assert!((2..=7).contains(&w.len()), "{w:?} is not short");
            assert!(w.bytes().all(|b| b.is_ascii_lowercase()), "{w:?}");
        }
        // No word is a prefix of another, so a phrase reads one way.
        for a in WORDS {
            for b in WORDS {
                assert!(a == b || !b.starts_with(a), "{a:?} starts {b:?}");
            }
        }
    }

    #[test]
    fn a_phrase_is_three_words() {
        assert_eq!(
            phrase([1, 0, 255]),
            format!("{}-{}-{}", WORDS[1], WORDS[0], WORDS[255])
        );
        let p = phrase([7, 8, 9]);
        assert_eq!(p.split('-').count(), 3);
    }
}
