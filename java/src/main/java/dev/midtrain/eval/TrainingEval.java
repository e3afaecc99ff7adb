package dev.midtrain.eval;

import dev.midtrain.kernels.HostFloats;
import dev.midtrain.common.UserError;
import dev.midtrain.config.EvalConfig;
import dev.midtrain.config.RunConfig;
import dev.midtrain.data.Manifest;
import dev.midtrain.infer.Engine;
import dev.midtrain.infer.InferenceModel;
import dev.midtrain.model.Llama;
import dev.midtrain.model.ParamLayout;
import dev.midtrain.tokenizer.Tokenizer;
import dev.midtrain.train.MetricsLog;
import dev.midtrain.train.StepListener;
import dev.midtrain.train.Trainer;

import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * {@code eval.tasks} during training (one rank): at every {@code eval.every_steps}-th step and the last, copies the
 * current weights into a forward-only {@link InferenceModel} on the training backend, scores every task file and
 * attaches {@code eval_acc} / {@code eval_acc_norm} (by task file name) to the step's metrics line. The task files
 * and the tokenizer are loaded once, when the listener is built (so a bad file fails before training starts).
 */
public final class TrainingEval implements StepListener, AutoCloseable {
    private final EvalConfig ec;
    private final int every;
    private final long lastStep;
    private final MetricsLog metrics;
    private final Tokenizer tok;
    private final Map<String, List<McItem>> tasks = new LinkedHashMap<>();
    private final Map<String, Map<String, List<McItem>>> shots = new LinkedHashMap<>();

    public TrainingEval(RunConfig cfg, MetricsLog metrics) {
        this.ec = cfg.eval();
        this.every = ec.everySteps() > 0 ? ec.everySteps() : cfg.train().evalEverySteps();
        if (every <= 0) throw new UserError("eval.every_steps: must be > 0 when eval.tasks is set (or set train.eval_every_steps)");
        this.lastStep = cfg.train().steps();
        this.metrics = metrics;
        for (String f : ec.tasks()) {
            Path p = Path.of(f);
            List<McItem> items = McTasks.load(p);
            if (ec.limit() > 0 && items.size() > ec.limit()) items = items.subList(0, ec.limit());
            String name = McTasks.defaultSubject(p);
            List<McItem> dev = List.of();
            if (ec.shots() > 0) {
                Path d = McTasks.devSibling(p);
                if (d == null) throw new UserError("eval.shots " + ec.shots() + ": no dev file beside " + p);
                dev = McTasks.load(d);
            }
            tasks.put(name, items);
            shots.put(name, McPrompt.shots(items, dev, ec.shots(), 1234));
        }
        Path tokFile;
        if (ec.tokenizer() != null) tokFile = Path.of(ec.tokenizer());
        else if (cfg.data() != null) tokFile = Path.of(Manifest.read(Path.of(cfg.data().sources().get(0).path())).tokenizer().file());
        else throw new UserError("eval.tokenizer: required when the run has no data section");
        this.tok = Tokenizer.open(tokFile, Tokenizer.END_OF_TEXT);
    }

    public boolean due(long step) { return step % every == 0 || step == lastStep; }

    @Override
    public void onStepEnd(Trainer t) {
        long step = t.state().step;
        if (!due(step)) return;
        Map<String, Double> acc = new LinkedHashMap<>(), accNorm = new LinkedHashMap<>();
        Llama m = t.model();
        ParamLayout layout = ParamLayout.of(m.config());
        try (HostFloats w = HostFloats.allocate(layout.numel())) {
            m.backend().copyDeviceToHost(w.address(), m.slabs().params(), 4L * layout.numel());
            try (InferenceModel im = new InferenceModel(m.backend(), layout, w, 4 * m.config().maxSeqLen())) {
                Engine e = Engine.of(im, tok);
                for (var task : tasks.entrySet()) {
                    EvalReport r = EvalReport.of(task.getKey(), ec.shots(), Evaluator.run(e, task.getValue(), shots.get(task.getKey())));
                    acc.put(task.getKey(), r.microAcc());
                    accNorm.put(task.getKey(), r.microAccNorm());
                }
            }
        }
        metrics.attach("eval_acc", acc);
        metrics.attach("eval_acc_norm", accNorm);
    }

    @Override
    public void close() { tok.close(); }
}
