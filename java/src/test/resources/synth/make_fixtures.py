#!/usr/bin/env python3
"""Writes the recorded endpoint responses of SynthesizeTest (responses.jsonl) and its seed file (seeds.jsonl).

Run from this directory: python3 make_fixtures.py. Each response entry: model, match (substrings that must all occur
in the request's messages), content (the assistant message) or body (a raw HTTP body), faults (served first, one per
attempt: 429 = Retry-After 1, 500, slow = past the client's timeout, drop = connection closed without a response).
"""
import json

SEEDS = [  # id, text, discipline, tier
    ("s1", "Solve the linear equation 3x + 7 = 22 and check the solution by substituting it back into the equation.", "mathematics", "H2"),
    ("s2", "A ball is thrown vertically upward at 20 m/s; find its maximum height and the time until it returns, neglecting air resistance.", "physics", "H3"),
    ("s3", "An ideal gas at constant temperature is compressed to half its volume; explain what happens to its pressure using Boyle's law.", "chemistry", "H2"),
    ("s4", "Photosynthesis converts light energy into chemical energy stored in glucose inside the chloroplasts of plant cells.", "biology", "H1"),
    ("s5", "Prove that there are infinitely many primes of the form 4k+3 using a variant of Euclid's argument with products of primes.", "mathematics", "H5"),
    ("s6", "Analyse the amortized cost of insertions into a dynamic array that doubles its capacity whenever it becomes full.", "computer_science", "H4"),
]
EXTRA_SEEDS = [  # rejected by curate
    {"id": "dup", "text": "Solve the linear equation 3x + 7 = 22, and check the solution by substituting it back into the equation!"},
    {"id": "short", "text": "What is 2 + 2?"},
    {"id": "near", "text": SEEDS[5][1].rstrip(".") + ", in detail."},   # MinHash near-duplicate of s6 (Jaccard ~0.88)
    {"id": "leak", "question": "How many distinct ways can the letters of the word LEVEL be arranged if identical letters are indistinguishable?", "answer": "30"},
]
GRADES = ["high_school", "college", "graduate"]
ROLE = {"high_school": "high-school teacher", "college": "university lecturer", "graduate": "qualifying-exam questions"}
# generator's label per (seed tier, grade); graduate requests mostly come back at college level (downward degradation)
GEN_TIER = {"high_school": lambda t: t, "college": lambda t: min("H5", "H%d" % (int(t[1]) + 1)), "graduate": lambda t: min("H5", "H%d" % (int(t[1]) + 1))}
JUDGED_GRADE = {"high_school": "high_school", "college": "college", "graduate": "college"}

out = []
def add(model, match, content=None, body=None, faults=()):
    e = {"model": model, "match": match}
    if content is not None: e["content"] = content
    if body is not None: e["body"] = body
    if faults: e["faults"] = list(faults)
    out.append(e)

ann_faults = {"s2": ["429"], "s3": ["500", "500"]}
for sid, text, disc, tier in SEEDS:
    add("judge", [text], json.dumps({"discipline": disc, "difficulty": tier, "rationale": "recorded"}), faults=ann_faults.get(sid, ()))

gen_faults = {("s2", "college"): ["slow"], ("s3", "high_school"): ["drop"], ("s6", "graduate"): ["500", "429"]}
questions = []
for sid, text, disc, tier in SEEDS:
    for g in GRADES:
        q = f"[{sid}/{g}] A {g.replace('_', ' ')} {disc} question built on: {text[:60]}"
        a = f"Step 1: set up. Step 2: compute. Final result: R-{sid}-{g}."
        d = GEN_TIER[g](tier)
        if (sid, g) == ("s4", "graduate"):
            content = "Sure! Here is a graduate question about photosynthesis: why do C4 plants ..."      # no JSON at all
        elif (sid, g) == ("s1", "graduate"):
            content = json.dumps({"question": q, "answer": a, "difficulty": "H7"})                       # off-schema tier
        elif (sid, g) == ("s2", "high_school"):
            content = "<think>The student level is high school, so kinematics.</think>\n```json\n" + json.dumps({"question": q, "answer": a, "difficulty": d}) + "\n```"
            questions.append((q, disc, g, d, "multi_grade", sid))
        else:
            content = json.dumps({"question": q, "answer": a, "difficulty": d})
            questions.append((q, disc, g, d, "multi_grade", sid))
        add("r1", [text, ROLE[g]], content, faults=gen_faults.get((sid, g), ()))
    # booster: recorded for every seed (the draw picks some); s2's comes back too easy
    q = f"[{sid}/hd] A hard {disc} problem extending: {text[:60]}"
    a = f"Step 1: reduce. Step 2: bound. Step 3: conclude. Final result: R-{sid}-hd."
    d = "H3" if sid == "s2" else ("H5" if tier in ("H4", "H5") else "H4")
    add("r1-boost", [text], json.dumps({"question": q, "answer": a, "difficulty": d}))
    if sid != "s2":
        questions.append((q, disc, "graduate", d, "high_difficulty", sid))

for q, disc, g, d, branch, sid in questions:
    ans = "Worked again step by step. Final result: R-" + q[1:q.index("]")].replace("/", "-") + "."
    solvable, consistent = True, True
    if q.startswith("[s3/college]"): consistent = False
    if q.startswith("[s5/high_school]"): solvable = False
    judged_grade = "graduate" if branch == "high_difficulty" else JUDGED_GRADE[g]
    if q.startswith("[s6/high_school]"):
        add("v3", [q], body='{"error": "upstream returned no choices"}')                         # 200, not a completion
    else:
        add("v3", [q], json.dumps({"solvable": solvable, "answer": ans, "consistent": consistent, "grade": judged_grade, "difficulty": d}))

with open("responses.jsonl", "w") as f:
    for e in out: f.write(json.dumps(e) + "\n")
with open("seeds.jsonl", "w") as f:
    for sid, text, disc, tier in SEEDS: f.write(json.dumps({"id": sid, "text": text, "discipline": disc}) + "\n")
    for e in EXTRA_SEEDS: f.write(json.dumps(e) + "\n")
print(len(out), "responses")
