package dev.midtrain.model;

import com.tngtech.archunit.core.domain.JavaClass;
import com.tngtech.archunit.core.domain.JavaClasses;
import com.tngtech.archunit.core.domain.JavaMethodCall;
import dev.midtrain.MainClasses;
import dev.midtrain.kernels.Kernels;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;

import static org.junit.jupiter.api.Assertions.assertEquals;

/**
 * The transformer block is written once ({@link Block}): training ({@link Llama}), inference (infer.InferenceModel)
 * and any later caller (a pipeline stage) run it instead of calling its kernels themselves. Checked on the compiled
 * main classes: the kernels only a block calls, and the per-layer weight offsets of {@link ParamLayout.Offsets}, are
 * used by {@link Block} alone. The benchmarks and the kernel validation (package bench) call single kernels on
 * purpose and are exempt.
 */
class OneBlockForwardTest {
    /** Kernels that belong to a decoder block (the embedding, norms, head and cross-entropy are also used outside). */
    static final Set<String> BLOCK_KERNELS = Set.of("ropeForward", "ropeBackward", "attentionForward", "attentionBackward",
            "swigluForward", "swigluBackward");
    /** ParamLayout.Offsets' per-layer accessors. */
    static final Set<String> LAYER_OFFSETS = Set.of("qkv", "o", "gateUp", "down", "ln1", "ln2");

    static JavaClasses main;

    @BeforeAll
    static void importMain() { main = MainClasses.get(); }

    /** Top-level class name of each caller outside bench and kernels of a method selected by the predicate, with the methods. */
    private static TreeMap<String, Set<String>> callers(java.util.function.Predicate<JavaMethodCall> selected) {
        TreeMap<String, Set<String>> out = new TreeMap<>();
        for (JavaClass c : main) {
            String pkg = c.getPackageName();
            if (pkg.startsWith("dev.midtrain.bench") || pkg.startsWith("dev.midtrain.kernels")) continue;
            for (JavaMethodCall call : c.getMethodCallsFromSelf())
                if (selected.test(call))
                    out.computeIfAbsent(c.getName().replaceAll("\\$.*", ""), k -> new TreeSet<>()).add(call.getTarget().getName());
        }
        return out;
    }

    @Test
    void onlyBlockCallsTheBlockKernels() {
        var found = callers(call -> BLOCK_KERNELS.contains(call.getTarget().getName())
                && call.getTarget().getOwner().isAssignableTo(Kernels.class));
        // Block itself calls all six: the rule is not vacuous
        assertEquals(BLOCK_KERNELS, found.get(Block.class.getName()), "Block's kernel calls");
        assertEquals(Set.of(Block.class.getName()), found.keySet(),
                "a block kernel called outside model.Block (re-implementing the block?): " + found);
    }

    @Test
    void onlyBlockReadsPerLayerWeightOffsets() {
        var found = callers(call -> LAYER_OFFSETS.contains(call.getTarget().getName())
                && call.getTarget().getOwner().isEquivalentTo(ParamLayout.Offsets.class));
        assertEquals(LAYER_OFFSETS, found.get(Block.class.getName()), "Block's offset reads");
        assertEquals(Set.of(Block.class.getName()), found.keySet(),
                "per-layer weight offsets read outside model.Block (re-implementing the block?): " + found);
    }
}
