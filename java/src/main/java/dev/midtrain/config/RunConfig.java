package dev.midtrain.config;

import static dev.midtrain.config.Check.require;

/** A whole run, as loaded from one YAML file plus --set overrides. Sections may be absent where a command needs none. */
public record RunConfig(ModelConfig model, OptimConfig optimizer, TrainConfig train, DataConfig data,
                        CheckpointConfig checkpoint, ParallelConfig parallel, EvalConfig eval, DiagnosticsConfig diagnostics) {
    @com.fasterxml.jackson.annotation.JsonCreator
    public RunConfig {
        require(model != null, "model", "section is required");
        if (parallel == null) parallel = ConfigLoader.defaultSection("parallel", ParallelConfig.class);       // defaults.yaml
        if (checkpoint == null) checkpoint = ConfigLoader.defaultSection("checkpoint", CheckpointConfig.class);
        if (eval == null) eval = ConfigLoader.defaultSection("eval", EvalConfig.class);
        if (diagnostics == null) diagnostics = ConfigLoader.defaultSection("diagnostics", DiagnosticsConfig.class);
        require(diagnostics.everySteps() == 0 || parallel.worldSize() == 1, "diagnostics.every_steps",
                "gradient diagnostics run on one rank (parallel.tp 1, parallel.dp 1, parallel.pp 1)");
        require(eval.tasks().isEmpty() || parallel.worldSize() == 1, "eval.tasks",
                "evaluation during training runs on one rank (parallel.tp 1, parallel.dp 1, parallel.pp 1); use midtrain eval on the checkpoints");
        String badTp = Placement.invalidTp(model, parallel.tp());          // the one check of tp against the model
        require(badTp == null, "parallel.tp", badTp);
        require(model.nLayers() % (parallel.pp() * parallel.virtualStages()) == 0, "parallel.pp",
                "parallel.pp (" + parallel.pp() + ") x parallel.virtual_stages (" + parallel.virtualStages() + ") must divide model.n_layers ("
                        + model.nLayers() + ")");
        if (train != null) {
            require(train.seqLen() <= model.maxSeqLen(), "train.seq_len",
                    "must be <= model.max_seq_len (" + model.maxSeqLen() + "), got " + train.seqLen());
            require(train.globalBatchSeqs() % (train.microBatchSeqs() * parallel.dp()) == 0, "train.global_batch_seqs",
                    "must be a multiple of train.micro_batch_seqs x parallel.dp (" + train.microBatchSeqs() * parallel.dp()
                            + "), got " + train.globalBatchSeqs());
            int m = train.globalBatchSeqs() / (train.microBatchSeqs() * parallel.dp());
            require(parallel.virtualStages() == 1 || m % parallel.pp() == 0, "parallel.virtual_stages",
                    "the interleaved schedule needs micro-batches per step (" + m + ") to be a multiple of parallel.pp (" + parallel.pp() + ")");
        }
    }

    /** Without an eval section. */
    public RunConfig(ModelConfig model, OptimConfig optimizer, TrainConfig train, DataConfig data, CheckpointConfig checkpoint,
                     ParallelConfig parallel) {
        this(model, optimizer, train, data, checkpoint, parallel, null, null);
    }

    /** Without a diagnostics section. */
    public RunConfig(ModelConfig model, OptimConfig optimizer, TrainConfig train, DataConfig data, CheckpointConfig checkpoint,
                     ParallelConfig parallel, EvalConfig eval) {
        this(model, optimizer, train, data, checkpoint, parallel, eval, null);
    }

    /** Micro-batches each data-parallel rank accumulates per optimizer step. */
    public int gradAccumSteps() {
        return train.globalBatchSeqs() / (train.microBatchSeqs() * parallel.dp());
    }
}
