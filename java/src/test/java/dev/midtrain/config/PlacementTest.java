package dev.midtrain.config;

import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Placement against counting: over the ranks of a group every head, FFN column and vocabulary id is held as Megatron places it. */
class PlacementTest {
    static ModelConfig model(int nHeads, int nKv, int ffn, int vocab) {
        return new ModelConfig(vocab, 8 * nHeads, 2, nHeads, nKv, ffn, 1e4, 1e-5, 64, false);
    }

    @Test
    void ranksCoverTheModelExactlyOnce() {
        ModelConfig[] models = {model(8, 2, 24, 96), model(4, 4, 12, 60), model(6, 1, 18, 30)};
        for (ModelConfig m : models)
            for (int tp = 1; tp <= 8; tp++) {
                if (Placement.invalidTp(m, tp) != null) continue;
                int heads = 0, ffn = 0;
                int[] vocabHolders = new int[m.vocabSize()], kvHolders = new int[m.nKvHeads()];
                for (int r = 0; r < tp; r++) {
                    Placement p = new Placement(m, tp, r);
                    heads += p.heads();
                    ffn += p.ffn();
                    for (int v = p.vocabStart(); v < p.vocabStart() + p.vocab(); v++) vocabHolders[v]++;
                    // KV heads of this rank: slice kvIndex of kvShards equal slices
                    int per = m.nKvHeads() / p.kvShards();
                    assertEquals(per, p.kvHeads(), m + " tp " + tp);
                    for (int h = p.kvIndex() * per; h < (p.kvIndex() + 1) * per; h++) kvHolders[h]++;
                    assertTrue(p.kvRank() >= 0 && p.kvRank() < p.kvReplicas());
                }
                assertEquals(m.nHeads(), heads);
                assertEquals(m.ffnDim(), ffn);
                for (int c : vocabHolders) assertEquals(1, c, "each vocabulary id on one rank");
                int replicas = tp > m.nKvHeads() ? tp / m.nKvHeads() : 1;
                for (int c : kvHolders) assertEquals(replicas, c, "each KV head on kvReplicas ranks");
                assertEquals(replicas, Placement.of(m, tp).kvReplicas());
            }
    }

    @Test
    void invalidDegreesNameTheModelField() {
        ModelConfig m = model(8, 2, 24, 96);
        assertNull(Placement.invalidTp(m, 4));
        assertEquals("3 must divide model.n_heads 8", Placement.invalidTp(m, 3));
        assertEquals("8 must divide model.ffn_dim 20", Placement.invalidTp(model(8, 2, 20, 96), 8));
        assertTrue(Placement.invalidTp(model(8, 2, 32, 100), 8).contains("model.vocab_size"));
        Check.ConfigException e = assertThrows(Check.ConfigException.class, () -> new Placement(m, 3, 0));
        assertEquals("parallel.tp", e.field());
        assertThrows(IllegalArgumentException.class, () -> new Placement(m, 2, 2));
        // the run config refuses it once, at load
        Check.ConfigException rc = assertThrows(Check.ConfigException.class,
                () -> new RunConfig(m, null, null, null, null, new ParallelConfig(3, 1, true)));
        assertTrue(rc.getMessage().startsWith("parallel.tp: 3 must divide model.n_heads"), rc.getMessage());
    }
}
