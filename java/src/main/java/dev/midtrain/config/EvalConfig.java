package dev.midtrain.config;

import java.util.List;

import static dev.midtrain.config.Check.require;

/**
 * Multiple-choice evaluation during training (the {@code eval} section): the tasks of {@code midtrain eval}, scored
 * every {@code every_steps} optimizer steps and at the last step, logged to metrics.jsonl as {@code eval_acc} and
 * {@code eval_acc_norm} per task file and drawn by {@code midtrain plot}.
 *
 * @param tasks      task files (JSONL or Arrow, as for {@code midtrain eval}); empty = no evaluation
 * @param everySteps evaluate every N steps (0 with tasks: train.eval_every_steps)
 * @param shots      k-shot prompts from each task file's dev sibling
 * @param limit      score only the first N items of each file (0 = all), to bound the time it takes
 * @param tokenizer  tokenizer.json; null = the one recorded by the first data source's manifest
 */
public record EvalConfig(List<String> tasks, int everySteps, int shots, int limit, String tokenizer) {
    public EvalConfig {
        tasks = tasks == null ? List.of() : List.copyOf(tasks);
        require(everySteps >= 0, "eval.every_steps", "must be >= 0, got " + everySteps);
        require(shots >= 0, "eval.shots", "must be >= 0, got " + shots);
        require(limit >= 0, "eval.limit", "must be >= 0, got " + limit);
    }
}
