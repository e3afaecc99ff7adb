package dev.midtrain;

import com.tngtech.archunit.core.domain.Dependency;
import com.tngtech.archunit.core.domain.JavaClass;
import com.tngtech.archunit.core.domain.JavaClasses;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;

import static com.tngtech.archunit.base.DescribedPredicate.not;
import static com.tngtech.archunit.core.domain.JavaClass.Predicates.resideInAPackage;
import static com.tngtech.archunit.lang.syntax.ArchRuleDefinition.noClasses;
import static com.tngtech.archunit.library.dependencies.SlicesRuleDefinition.slices;
import static org.junit.jupiter.api.Assertions.assertEquals;

/**
 * The package graph of the main code (docs/architecture.md): every package in its layer, importing only lower
 * layers; no cycles between the dev.midtrain.* packages; the leaf package {@code common} depends on none of them;
 * the command line does not pull in the benchmarks.
 * Checked on the compiled classes (what javac kept: javadoc links do not count).
 */
class PackageGraphTest {
    static JavaClasses main;

    @BeforeAll
    static void importMain() { main = MainClasses.get(); }

    @Test
    void noCyclesBetweenPackages() {
        slices().matching("dev.midtrain.(*)..").should().beFreeOfCycles().check(main);
    }

    /**
     * The layers of docs/architecture.md, top down: a package imports only packages of lower layers (and common and
     * config, which every layer may use). Every package of the main code must be listed: a new one fails here until
     * it is placed.
     */
    static final List<List<String>> LAYERS = List.of(
            List.of(""),                                   // dev.midtrain: Main
            List.of("recipe"),                             // midtrain recipe: runs the commands of cli
            List.of("cli"),
            List.of("bench", "eval", "serve"),
            List.of("infer"),
            List.of("ckpt"),
            List.of("train"),
            List.of("parallel", "optim", "synth"),
            List.of("prepare"),                            // preparation: tokenize, clean, decontaminate, write shards
            List.of("model", "data"),                      // data: loading prepared shards only
            List.of("tokenizer"),                          // the engine's tokenizer: DJL + the built-in byte-level BPE
            List.of("config"),
            List.of("kernels", "common"));

    @Test
    void everyPackageImportsOnlyLowerLayers() {
        Map<String, Integer> layer = new HashMap<>();
        for (int i = 0; i < LAYERS.size(); i++) for (String p : LAYERS.get(i)) layer.put(p, i);
        Set<String> unplaced = new TreeSet<>(), violations = new TreeSet<>();
        for (JavaClass c : main) {
            String from = sub(c.getPackageName());
            if (!layer.containsKey(from)) { unplaced.add(from); continue; }
            for (Dependency d : c.getDirectDependenciesFromSelf()) {
                String pkg = d.getTargetClass().getPackageName();
                if (!pkg.startsWith("dev.midtrain")) continue;
                String to = sub(pkg);
                if (to.equals(from) || to.equals("common") || to.equals("config") && !from.equals("common") && !from.equals("kernels")) continue;
                Integer lt = layer.get(to);
                if (lt == null) unplaced.add(to);
                else if (lt <= layer.get(from)) violations.add(from + " -> " + to + " (" + c.getSimpleName() + " uses " + d.getTargetClass().getSimpleName() + ")");
            }
        }
        assertEquals(Set.of(), unplaced, "packages missing from LAYERS (and from docs/architecture.md)");
        assertEquals(Set.of(), violations, "imports of a package in the same or a higher layer");
        assertEquals(LAYERS.stream().mapToInt(List::size).sum(), layer.size(), "a package listed twice");
    }

    /** Preparation is offline: the training side (data loading, model, train, parallel, ckpt) never imports it. */
    @Test
    void trainingNeverImportsPreparation() {
        noClasses().that().resideInAnyPackage("dev.midtrain.data..", "dev.midtrain.model..", "dev.midtrain.train..",
                        "dev.midtrain.parallel..", "dev.midtrain.ckpt..")
                .should().dependOnClassesThat(resideInAPackage("dev.midtrain.prepare.."))
                .check(main);
    }

    /** dev.midtrain.x.y -> "x"; dev.midtrain -> "". */
    private static String sub(String pkg) {
        String rest = pkg.equals("dev.midtrain") ? "" : pkg.substring("dev.midtrain.".length());
        int dot = rest.indexOf('.');
        return dot < 0 ? rest : rest.substring(0, dot);
    }

    @Test
    void commonIsALeaf() {
        noClasses().that().resideInAPackage("dev.midtrain.common..")
                .should().dependOnClassesThat(resideInAPackage("dev.midtrain..").and(not(resideInAPackage("dev.midtrain.common.."))))
                .check(main);
    }

    /** A backend is opened one way, {@code Backend.open(name, device)}: nothing outside kernels constructs one itself. */
    @Test
    void backendsAreOpenedOneWay() {
        noClasses().that().resideOutsideOfPackage("dev.midtrain.kernels..")
                .should().callConstructor(dev.midtrain.kernels.CpuBackend.class)
                .orShould().callMethod(dev.midtrain.kernels.CudaBackend.class, "open", int.class)
                .check(main);
    }

    @Test
    void cliDoesNotImportBench() {
        noClasses().that().resideInAPackage("dev.midtrain.cli..")
                .should().dependOnClassesThat().resideInAPackage("dev.midtrain.bench..")
                .check(main);
    }
}
