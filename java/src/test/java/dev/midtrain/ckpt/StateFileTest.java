package dev.midtrain.ckpt;

import dev.midtrain.common.UserError;
import dev.midtrain.train.TrainState;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.*;

/**
 * trainer_state.json is read and written with the keys checkpoints have always had: {@code ckpt/trainer_state-v1.json}
 * was written by the ckpt.TrainerState record that StateFile replaced (one TrainState instead of two state classes).
 */
class StateFileTest {
    static final Path FILE = Path.of("trainer_state-v1.json");

    static String v1() throws IOException {
        try (InputStream in = StateFileTest.class.getResourceAsStream("/ckpt/trainer_state-v1.json")) {
            return new String(in.readAllBytes(), StandardCharsets.UTF_8);
        }
    }

    @Test
    void readsTheCommittedV1FileAndWritesItBackByteForByte() throws IOException {
        String text = v1();
        StateFile f = StateFile.parse(text, FILE);
        TrainState s = f.state();
        assertEquals(9, s.step);
        assertEquals(288, s.tokensTrained);
        assertEquals(1000, s.tokensSeenBefore);
        assertEquals(1288, s.tokensTotal());
        assertEquals(Map.of("a", 90L, "b", 198L), s.tokensPerSource);
        assertEquals(2, s.skippedSteps);
        assertEquals(7, s.optimizerSteps());
        assertEquals(63, s.loaderState.get("cursor").asLong());
        assertEquals(1234, s.seed);
        assertEquals(7.5e-4, f.lr());
        assertEquals("0.1.0", f.engineVersion());
        assertEquals(2, f.tp());
        assertEquals(1, f.dp());
        assertEquals(1, f.hfConfig().get("bos_token_id").asInt());
        assertEquals("/models/tiny-hf", f.initFrom());
        assertTrue(f.configYaml().contains("tp: 2"));
        assertEquals(text, f.toJson());
    }

    @Test
    void theFileIsASnapshotOfTheState() throws IOException {
        StateFile f = StateFile.parse(v1(), FILE);
        TrainState live = f.state().copy();
        StateFile snap = new StateFile(live, f.lr(), f.configYaml(), f.engineVersion(), f.tp(), f.dp(), f.hfConfig(), f.initFrom());
        live.step++;
        live.tokensPerSource.put("a", 1L);
        assertEquals(v1(), snap.toJson());                 // the trainer moving on does not change a pending save
    }

    @Test
    void nullsAndBadValuesAreOneLineErrorsNamingTheField() throws IOException {
        String text = v1();
        StateFile nulls = StateFile.parse(text.replaceAll("(?s)\"hf_config\" : \\{.*?}", "\"hf_config\" : null")
                .replace("\"init_from\" : \"/models/tiny-hf\"", "\"init_from\" : null"), FILE);
        assertNull(nulls.hfConfig());
        assertNull(nulls.initFrom());
        for (String[] c : new String[][]{
                {text.replace("\"seed\" : 1234", "\"calls\" : 3"), "field rng_state"},
                {text.replace("\"rng_state\" :", "\"rng\" :"), "missing field rng_state"},
                {text.replace("\"skipped_steps\" : 2", "\"skipped_steps\" : 2.5"), "field skipped_steps"},
                {text.replace("\"b\" : 198", "\"b\" : \"many\""), "field tokens_per_source.b"},
                {text.replace("\"tp\" : 2", "\"tp\" : 0"), "tp 0"},
                {text.replace("\"lr\" : 7.5E-4", "\"lr\" : \"high\""), "field lr"},
                {text.replace("\"engine_version\" : \"0.1.0\"", "\"engine_version\" : {\"v\" : 1}"), "field engine_version"},
                {text + "{}", "truncated"},
        }) {
            UserError e = assertThrows(UserError.class, () -> StateFile.parse(c[0], FILE), c[1]);
            assertTrue(e.getMessage().startsWith(FILE.toString()) && e.getMessage().contains(c[1]), e.getMessage());
            assertFalse(e.getMessage().contains("\n"));
        }
    }
}
