package dev.midtrain.ckpt;

import dev.midtrain.common.UserError;
import dev.midtrain.config.ConfigLoader;
import dev.midtrain.config.RunConfig;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeSet;

/**
 * What may change between a checkpoint's run config and the resuming run's. Refused (one line naming every
 * field): the model's shape and numerics (everything in model.* except max_seq_len). Allowed and reported:
 * everything else (learning rate, schedule, step budget, batch geometry, data sources, checkpoint policy...),
 * including the parallel layout (parallel.tp, parallel.pp, parallel.virtual_stages, parallel.dp, the node count): the ranks reshard the saved weights and
 * AdamW moments on load ({@link CommittedStep#loadRank}) and the loader position is a global batch index.
 */
public final class ResumeCheck {
    private ResumeCheck() {}

    /** Returns "field: old -> new" for each allowed change; throws a {@link UserError} for an incompatible one. */
    public static List<String> compare(RunConfig saved, RunConfig now, Path checkpoint) {
        Map<String, String> a = ConfigLoader.flatten(saved), b = ConfigLoader.flatten(now);
        List<String> refused = new ArrayList<>(), allowed = new ArrayList<>();
        TreeSet<String> keys = new TreeSet<>(a.keySet());
        keys.addAll(b.keySet());
        for (String k : keys) {
            String x = a.getOrDefault(k, "(absent)"), y = b.getOrDefault(k, "(absent)");
            if (x.equals(y)) continue;
            String change = k + " " + x + " -> " + y;
            if (k.startsWith("model.") && !k.equals("model.max_seq_len")) refused.add(change);
            else if (k.equals("parallel.tp") || k.equals("parallel.dp") || k.equals("parallel.pp") || k.equals("parallel.virtual_stages"))
                allowed.add(change + " (resharded)");
            else allowed.add(change);
        }
        if (!refused.isEmpty())
            throw new UserError(checkpoint + ": cannot resume with a different model shape: " + String.join("; ", refused));
        return allowed;
    }
}
