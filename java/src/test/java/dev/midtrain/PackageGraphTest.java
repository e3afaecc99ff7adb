package dev.midtrain;

import com.tngtech.archunit.core.domain.JavaClasses;
import com.tngtech.archunit.core.importer.ClassFileImporter;
import com.tngtech.archunit.core.importer.ImportOption;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import static com.tngtech.archunit.lang.syntax.ArchRuleDefinition.noClasses;
import static com.tngtech.archunit.library.dependencies.SlicesRuleDefinition.slices;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The package graph of the main code (docs/architecture.md): no cycles between the dev.midtrain.* packages, the
 * leaf package {@code common} depends on none of them, and the command line does not pull in the benchmarks.
 * Checked on the compiled classes (what javac kept: javadoc links do not count).
 */
class PackageGraphTest {
    static JavaClasses main;

    @BeforeAll
    static void importMain() {
        main = new ClassFileImporter().withImportOption(ImportOption.Predefined.DO_NOT_INCLUDE_TESTS).importPackages("dev.midtrain");
        // a rule over an empty import would pass vacuously
        assertTrue(main.size() > 100, "imported " + main.size() + " classes");
        assertTrue(main.containPackage("dev.midtrain.cli") && main.containPackage("dev.midtrain.common"));
    }

    @Test
    void noCyclesBetweenPackages() {
        slices().matching("dev.midtrain.(*)..").should().beFreeOfCycles().check(main);
    }

    @Test
    void commonIsALeaf() {
        noClasses().that().resideInAPackage("dev.midtrain.common..")
                .should().dependOnClassesThat().resideInAnyPackage(
                        "dev.midtrain.bench..", "dev.midtrain.ckpt..", "dev.midtrain.cli..", "dev.midtrain.config..",
                        "dev.midtrain.data..", "dev.midtrain.kernels..", "dev.midtrain.model..", "dev.midtrain.optim..",
                        "dev.midtrain.parallel..", "dev.midtrain.train..")
                .check(main);
    }

    @Test
    void cliDoesNotImportBench() {
        noClasses().that().resideInAPackage("dev.midtrain.cli..")
                .should().dependOnClassesThat().resideInAPackage("dev.midtrain.bench..")
                .check(main);
    }
}
