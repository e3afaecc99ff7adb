package dev.midtrain.config;

import java.util.List;

import static dev.midtrain.config.Check.require;

/**
 * The blended training data: prepared sources (midtrain prepare output directories) and their mixing weights.
 * The recipe's default is boostqa 1 : knowedu 1.
 *
 * @param sources        the sources and weights
 * @param validFraction  fraction of each source's sequences held out for validation
 * @param shuffle        true (default): each source's training sequences in a seeded permutation per epoch; false:
 *                       in prepared-stream order (one source: the stream itself; a blend: the mix's interleaving)
 */
public record DataConfig(List<Source> sources, double validFraction, boolean shuffle) {
    /** Shuffled. */
    public DataConfig(List<Source> sources, double validFraction) { this(sources, validFraction, true); }

    public DataConfig {
        require(sources != null && !sources.isEmpty(), "data.sources", "at least one source is required");
        sources = List.copyOf(sources);
        require(validFraction >= 0 && validFraction < 0.5, "data.valid_fraction", "must be in [0, 0.5), got " + validFraction);
        java.util.Set<String> names = new java.util.HashSet<>();
        for (Source s : sources) require(names.add(s.name()), "data.sources", "duplicate source name " + s.name());
    }

    /**
     * @param name    source name (e.g. boostqa); recorded in metrics and checkpoints
     * @param path    directory written by `midtrain prepare` (relative paths resolve against the working directory)
     * @param weight  mixing weight; the realized token mix tracks weight / sum(weights)
     */
    public record Source(String name, String path, double weight) {
        public Source {
            require(name != null && !name.isBlank(), "data.sources[].name", "is required");
            require(path != null && !path.isBlank(), "data.sources[" + name + "].path", "is required");
            require(weight > 0 && Double.isFinite(weight), "data.sources[" + name + "].weight", "must be > 0, got " + weight);
        }
    }
}
