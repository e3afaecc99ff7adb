package dev.midtrain;

import com.tngtech.archunit.core.domain.JavaClasses;
import com.tngtech.archunit.core.importer.ClassFileImporter;
import com.tngtech.archunit.core.importer.ImportOption;

import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The compiled main classes (what javac kept: javadoc links do not count), imported once per test JVM for the
 * ArchUnit rules (PackageGraphTest, model.OneBlockForwardTest): the import is the slow part.
 */
public final class MainClasses {
    private static JavaClasses classes;

    private MainClasses() {}

    public static synchronized JavaClasses get() {
        if (classes == null) {
            classes = new ClassFileImporter().withImportOption(ImportOption.Predefined.DO_NOT_INCLUDE_TESTS).importPackages("dev.midtrain");
            // a rule over an empty import would pass vacuously
            assertTrue(classes.size() > 100, "imported " + classes.size() + " classes");
            assertTrue(classes.containPackage("dev.midtrain.cli") && classes.containPackage("dev.midtrain.common"));
        }
        return classes;
    }
}
