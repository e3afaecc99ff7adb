package dev.midtrain.cli;

import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The top level of the command line: an unknown command is refused, even with --help after it. */
class CommandsTest {
    @Test
    void unknownCommandIsRefusedInOneLineWithExit2() {
        for (String[] args : new String[][]{{"frobnicate", "--help"}, {"frobnicate"}}) {
            Cli.Run r = Cli.run(args);
            assertEquals(2, r.code(), r.err());
            assertEquals("", r.out(), "no help text on stdout");
            assertEquals(1, r.err().strip().lines().count(), r.err());
            assertTrue(r.err().contains("frobnicate"), r.err());
        }
        Cli.Run help = Cli.run("--help");                                   // the top-level help still works, and lists bench
        assertEquals(0, help.code());
        assertTrue(help.out().contains("bench") && help.out().contains("train"), help.out());
        assertFalse(help.out().isEmpty());
    }
}
