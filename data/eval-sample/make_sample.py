#!/usr/bin/env python3
"""Writes the shipped multiple-choice sample (data/eval-sample/test.jsonl, dev.jsonl): 200 test items and 30 dev
items over six disciplines, difficulty tiers H1-H5, English and Chinese. Deterministic (seeded); no dependencies.

    python3 data/eval-sample/make_sample.py

Items are written by this script's author: computed ones (arithmetic, physics, chemistry, computing) take their
numbers from a seeded generator and their tier from the number of reasoning steps; recalled facts (biology,
geography) carry a tier set by hand. See README.md for what the tiers mean here.
"""
import json
import os
import random

HERE = os.path.dirname(os.path.abspath(__file__))
R = random.Random(20260101)
LETTERS = "ABCD"


def item(q, correct, wrong, subject, tier, lang, grade):
    wrong = [str(w) for w in wrong if str(w) != str(correct)]
    seen, ds = set(), []
    for w in wrong:
        if w not in seen:
            seen.add(w)
            ds.append(w)
    if len(ds) < 3 and str(correct).lstrip("-").isdigit():            # numeric: fill with neighbours
        for c in near(int(correct), 6):
            if str(c) not in seen and str(c) != str(correct) and len(ds) < 3:
                seen.add(str(c))
                ds.append(str(c))
    assert len(ds) >= 3, (q, correct, wrong)
    choices = [str(correct)] + ds[:3]
    R.shuffle(choices)
    return {"question": q, "choices": choices, "answer": LETTERS[choices.index(str(correct))],
            "subject": subject, "difficulty": f"H{tier}", "grade": grade, "language": lang}


def near(x, k=3, step=1):
    out = []
    d = 1
    while len(out) < k:
        for c in (x + d * step, x - d * step):
            if c != x and c not in out and len(out) < k:
                out.append(c)
        d += 1
    R.shuffle(out)
    return out


# ------------------------------------------------------------------------------------------------ mathematics
def mathematics(n_per_tier, lang):
    out = []
    for t in range(1, 6):
        for _ in range(n_per_tier):
            if t == 1:
                a, b = R.randint(2, 9), R.randint(2, 9)
                q = f"What is {a} + {b}?" if lang == "en" else f"{a} 加 {b} 等于多少？"
                out.append(item(q, a + b, near(a + b), "mathematics", 1, lang, "primary"))
            elif t == 2:
                a, b = R.randint(11, 29), R.randint(3, 9)
                q = f"What is {a} × {b}?" if lang == "en" else f"{a} 乘以 {b} 等于多少？"
                out.append(item(q, a * b, near(a * b, step=b), "mathematics", 2, lang, "primary"))
            elif t == 3:
                x, a, b = R.randint(2, 12), R.randint(2, 7), R.randint(1, 20)
                q = (f"Solve for x: {a}x + {b} = {a * x + b}." if lang == "en" else f"解方程：{a}x + {b} = {a * x + b}，x 等于多少？")
                out.append(item(q, x, near(x), "mathematics", 3, lang, "middle"))
            elif t == 4:
                r1, r2 = R.randint(1, 9), R.randint(1, 9)
                s, p = r1 + r2, r1 * r2
                q = (f"What is the sum of the roots of x^2 - {s}x + {p} = 0?" if lang == "en"
                     else f"方程 x^2 - {s}x + {p} = 0 的两根之和是多少？")
                out.append(item(q, s, [p, -s, s + 1, s - 1], "mathematics", 4, lang, "high"))
            else:
                n, k = R.randint(5, 9), R.randint(2, 3)
                from math import comb
                c = comb(n, k)
                q = (f"In how many ways can {k} people be chosen from {n}?" if lang == "en"
                     else f"从 {n} 个人中选出 {k} 个人，共有多少种选法？")
                out.append(item(q, c, [c * 2, n * k, c + n, comb(n, k - 1) if comb(n, k - 1) != c else c + 1], "mathematics", 5, lang, "high"))
    return out


# ---------------------------------------------------------------------------------------------------- physics
def physics(n_per_tier, lang):
    out = []
    units_en = [("force", "newton", ["joule", "watt", "pascal"]), ("energy", "joule", ["newton", "volt", "tesla"]),
                ("power", "watt", ["joule", "ohm", "hertz"]), ("electric resistance", "ohm", ["ampere", "volt", "farad"]),
                ("frequency", "hertz", ["second", "watt", "newton"]), ("pressure", "pascal", ["newton", "joule", "kelvin"])]
    units_zh = [("力", "牛顿", ["焦耳", "瓦特", "帕斯卡"]), ("能量", "焦耳", ["牛顿", "伏特", "特斯拉"]),
                ("功率", "瓦特", ["焦耳", "欧姆", "赫兹"]), ("电阻", "欧姆", ["安培", "伏特", "法拉"]),
                ("频率", "赫兹", ["秒", "瓦特", "牛顿"]), ("压强", "帕斯卡", ["牛顿", "焦耳", "开尔文"])]
    for t in range(1, 6):
        for i in range(n_per_tier):
            if t == 1:
                qty, u, w = (units_en if lang == "en" else units_zh)[i % 6]
                q = f"What is the SI unit of {qty}?" if lang == "en" else f"{qty}的国际单位是什么？"
                out.append(item(q, u, w, "physics", 1, lang, "middle"))
            elif t == 2:
                d, tt = R.randint(2, 12) * 10, R.randint(2, 5)
                v = d // tt if d % tt == 0 else None
                while v is None:
                    d, tt = R.randint(2, 12) * 10, R.randint(2, 5)
                    v = d // tt if d % tt == 0 else None
                q = (f"A car travels {d} m in {tt} s at constant speed. What is its speed in m/s?" if lang == "en"
                     else f"一辆车匀速行驶 {d} 米用时 {tt} 秒，速度是多少米每秒？")
                out.append(item(q, v, [d * tt, v + tt, d - tt, v * 2], "physics", 2, lang, "middle"))
            elif t == 3:
                m, a = R.randint(2, 9), R.randint(2, 6)
                q = (f"A net force accelerates a {m} kg mass at {a} m/s^2. What is the force in newtons?" if lang == "en"
                     else f"质量为 {m} 千克的物体加速度为 {a} 米每二次方秒，合力是多少牛顿？")
                out.append(item(q, m * a, [m + a, m * a * 2, m * a + m, abs(m - a) + 1], "physics", 3, lang, "high"))
            elif t == 4:
                m, v = R.choice([2, 4, 6, 8]), R.randint(2, 6)
                ke = m * v * v // 2
                q = (f"What is the kinetic energy in joules of a {m} kg object moving at {v} m/s?" if lang == "en"
                     else f"质量 {m} 千克、速度 {v} 米每秒的物体动能是多少焦耳？")
                out.append(item(q, ke, [m * v * v, m * v // 2 if m * v // 2 != ke else ke + 1, m * v, ke + m], "physics", 4, lang, "high"))
            else:
                h = R.choice([5, 20, 45, 80])                           # g = 10 m/s^2, falls from rest: t = sqrt(2h/g)
                tt = int((2 * h / 10) ** 0.5)
                q = (f"Ignoring air resistance and taking g = 10 m/s^2, how many seconds does a stone dropped from rest take to fall {h} m?"
                     if lang == "en" else f"忽略空气阻力，取 g = 10 米每二次方秒，石块从静止下落 {h} 米需要多少秒？")
                out.append(item(q, tt, [tt * 2, tt + 1, h // 10, tt + 3], "physics", 5, lang, "high"))
    return out


# -------------------------------------------------------------------------------------------------- chemistry
ELEMENTS = [("hydrogen", "氢", "H", 1, 1), ("helium", "氦", "He", 2, 4), ("carbon", "碳", "C", 6, 12), ("nitrogen", "氮", "N", 7, 14),
            ("oxygen", "氧", "O", 8, 16), ("sodium", "钠", "Na", 11, 23), ("magnesium", "镁", "Mg", 12, 24),
            ("sulfur", "硫", "S", 16, 32), ("chlorine", "氯", "Cl", 17, 35.5), ("calcium", "钙", "Ca", 20, 40),
            ("iron", "铁", "Fe", 26, 56), ("copper", "铜", "Cu", 29, 64)]
MOLECULES = [("water", "水", "H2O", 18), ("carbon dioxide", "二氧化碳", "CO2", 44), ("methane", "甲烷", "CH4", 16),
             ("ammonia", "氨", "NH3", 17), ("sodium chloride", "氯化钠", "NaCl", 58.5), ("oxygen gas", "氧气", "O2", 32),
             ("calcium carbonate", "碳酸钙", "CaCO3", 100), ("sulfuric acid", "硫酸", "H2SO4", 98)]


def fmt(x):
    return str(int(x)) if float(x).is_integer() else str(x)


def chemistry(n_per_tier, lang):
    out = []
    for t in range(1, 6):
        for i in range(n_per_tier):
            if t == 1:
                en, zh, sym, z, _ = ELEMENTS[i % len(ELEMENTS)]
                others = [e[2] for e in ELEMENTS if e[2] != sym]
                R.shuffle(others)
                q = f"What is the chemical symbol of {en}?" if lang == "en" else f"{zh}元素的化学符号是什么？"
                out.append(item(q, sym, others[:3], "chemistry", 1, lang, "middle"))
            elif t == 2:
                en, zh, sym, z, _ = ELEMENTS[(i * 5 + 3) % len(ELEMENTS)]
                q = f"What is the atomic number of {en}?" if lang == "en" else f"{zh}的原子序数是多少？"
                out.append(item(q, z, near(z), "chemistry", 2, lang, "middle"))
            elif t == 3:
                en, zh, f, mm = MOLECULES[i % len(MOLECULES)]
                q = (f"What is the molar mass of {en} ({f}) in g/mol?" if lang == "en" else f"{zh}（{f}）的摩尔质量是多少克每摩尔？")
                out.append(item(q, fmt(mm), [fmt(mm + 2), fmt(mm - 1), fmt(mm * 2)], "chemistry", 3, lang, "high"))
            elif t == 4:
                en, zh, f, mm = MOLECULES[(i + 3) % len(MOLECULES)]
                n = R.randint(2, 5)
                q = (f"How many grams are {n} mol of {en} ({f})?" if lang == "en" else f"{n} 摩尔{zh}（{f}）的质量是多少克？")
                out.append(item(q, fmt(n * mm), [fmt(mm), fmt(n * mm + mm), fmt(n + mm)], "chemistry", 4, lang, "high"))
            else:
                n = R.randint(2, 6)                                     # 2 H2 + O2 -> 2 H2O
                q = (f"In 2H2 + O2 -> 2H2O, how many moles of water form from {2 * n} mol of H2 with excess oxygen?" if lang == "en"
                     else f"反应 2H2 + O2 -> 2H2O 中，{2 * n} 摩尔氢气与足量氧气反应生成多少摩尔水？")
                out.append(item(q, 2 * n, [n, 4 * n, 2 * n + 1], "chemistry", 5, lang, "high"))
    return out


# ---------------------------------------------------------------------------------------------------- biology
BIO = [  # (tier, en question, en answer, en distractors, zh question, zh answer, zh distractors)
    (1, "Which organ pumps blood through the human body?", "heart", ["lung", "liver", "kidney"],
        "人体中负责泵血的器官是什么？", "心脏", ["肺", "肝脏", "肾脏"]),
    (1, "What gas do plants take in for photosynthesis?", "carbon dioxide", ["oxygen", "nitrogen", "helium"],
        "植物进行光合作用吸收的气体是什么？", "二氧化碳", ["氧气", "氮气", "氦气"]),
    (1, "How many legs does an insect have?", "six", ["four", "eight", "ten"],
        "昆虫有几条腿？", "六条", ["四条", "八条", "十条"]),
    (1, "Which part of the plant absorbs water from the soil?", "root", ["leaf", "flower", "fruit"],
        "植物的哪个部分从土壤中吸收水分？", "根", ["叶", "花", "果实"]),
    (2, "Which organelle is the site of photosynthesis?", "chloroplast", ["mitochondrion", "ribosome", "nucleus"],
        "光合作用发生在哪种细胞器中？", "叶绿体", ["线粒体", "核糖体", "细胞核"]),
    (2, "Which blood cells carry oxygen?", "red blood cells", ["white blood cells", "platelets", "plasma cells"],
        "哪种血细胞负责运输氧气？", "红细胞", ["白细胞", "血小板", "浆细胞"]),
    (2, "Which organelle produces most of a cell's ATP?", "mitochondrion", ["Golgi apparatus", "lysosome", "vacuole"],
        "细胞中产生大部分 ATP 的细胞器是什么？", "线粒体", ["高尔基体", "溶酶体", "液泡"]),
    (2, "What is the basic unit of life?", "the cell", ["the atom", "the organ", "the tissue"],
        "生命的基本单位是什么？", "细胞", ["原子", "器官", "组织"]),
    (3, "Which base pairs with adenine in DNA?", "thymine", ["uracil", "cytosine", "guanine"],
        "DNA 中与腺嘌呤配对的碱基是什么？", "胸腺嘧啶", ["尿嘧啶", "胞嘧啶", "鸟嘌呤"]),
    (3, "Where in the cell does translation take place?", "ribosome", ["nucleus", "lysosome", "cell wall"],
        "翻译过程在细胞的哪个结构中进行？", "核糖体", ["细胞核", "溶酶体", "细胞壁"]),
    (3, "How many chromosomes does a typical human body cell contain?", "46", ["23", "44", "48"],
        "人体正常体细胞中有多少条染色体？", "46", ["23", "44", "48"]),
    (3, "Which molecule carries amino acids to the ribosome?", "tRNA", ["mRNA", "rRNA", "DNA"],
        "把氨基酸运到核糖体的分子是什么？", "tRNA", ["mRNA", "rRNA", "DNA"]),
    (4, "In a cross Aa x Aa, what fraction of offspring is expected to be aa?", "1/4", ["1/2", "3/4", "1/8"],
        "杂交 Aa x Aa 中，后代为 aa 的预期比例是多少？", "1/4", ["1/2", "3/4", "1/8"]),
    (4, "During which phase of mitosis do sister chromatids separate?", "anaphase", ["prophase", "metaphase", "telophase"],
        "有丝分裂的哪个时期姐妹染色单体分离？", "后期", ["前期", "中期", "末期"]),
    (4, "Which enzyme unwinds the DNA double helix during replication?", "helicase", ["ligase", "primase", "amylase"],
        "DNA 复制时负责解开双螺旋的酶是什么？", "解旋酶", ["连接酶", "引物酶", "淀粉酶"]),
    (4, "Which hormone lowers blood glucose?", "insulin", ["glucagon", "adrenaline", "thyroxine"],
        "降低血糖的激素是什么？", "胰岛素", ["胰高血糖素", "肾上腺素", "甲状腺素"]),
    (5, "In a cross AaBb x AaBb with independent assortment, what fraction of offspring shows both recessive traits?", "1/16", ["1/4", "3/16", "9/16"],
        "AaBb x AaBb 杂交且两对基因独立遗传时，两种隐性性状同时出现的后代比例是多少？", "1/16", ["1/4", "3/16", "9/16"]),
    (5, "How many ATP molecules does glycolysis yield net per glucose?", "2", ["4", "36", "38"],
        "一分子葡萄糖经糖酵解净产生多少分子 ATP？", "2", ["4", "36", "38"]),
    (5, "If a DNA strand reads 5'-ATGC-3', what is its complementary strand read 5' to 3'?", "GCAT", ["TACG", "CGTA", "ATGC"],
        "若 DNA 一条链为 5'-ATGC-3'，其互补链按 5' 到 3' 方向读是什么？", "GCAT", ["TACG", "CGTA", "ATGC"]),
    (5, "A population in Hardy-Weinberg equilibrium has q = 0.1. What is the frequency of heterozygotes?", "0.18", ["0.01", "0.81", "0.09"],
        "处于哈迪-温伯格平衡的种群中 q = 0.1，杂合子频率是多少？", "0.18", ["0.01", "0.81", "0.09"]),
]


def biology():
    out = []
    for tier, qe, ae, de, qz, az, dz in BIO:
        out.append(item(qe, ae, de, "biology", tier, "en", "high" if tier >= 3 else "middle"))
        out.append(item(qz, az, dz, "biology", tier, "zh", "high" if tier >= 3 else "middle"))
    return out


# ------------------------------------------------------------------------------------------ computer science
def computer_science(n_per_tier, lang):
    out = []
    for t in range(1, 6):
        for _ in range(n_per_tier):
            if t == 1:
                n = R.randint(1, 7)
                q = f"What is the decimal value of binary {n:b}?" if lang == "en" else f"二进制数 {n:b} 的十进制值是多少？"
                out.append(item(q, n, near(n), "computer_science", 1, lang, "middle"))
            elif t == 2:
                n = R.randint(9, 31)
                q = f"What is {n} written in binary?" if lang == "en" else f"十进制数 {n} 写成二进制是什么？"
                out.append(item(q, f"{n:b}", [f"{m:b}" for m in near(n)], "computer_science", 2, lang, "high"))
            elif t == 3:
                n = R.randint(17, 250)
                q = f"What is hexadecimal {n:X} in decimal?" if lang == "en" else f"十六进制数 {n:X} 的十进制值是多少？"
                out.append(item(q, n, near(n, step=R.choice([1, 16])), "computer_science", 3, lang, "university"))
            elif t == 4:
                k = R.randint(4, 10)
                n = 2 ** k
                q = (f"At most how many comparisons does binary search need on a sorted array of {n} elements?" if lang == "en"
                     else f"在 {n} 个元素的有序数组上做二分查找，最多需要比较多少次？")
                out.append(item(q, k + 1, [k - 1, n // 2, n], "computer_science", 4, lang, "university"))
            else:
                a, b = R.randint(5, 15), R.randint(5, 15)
                q = (f"What is {a} XOR {b} (bitwise, in decimal)?" if lang == "en" else f"{a} 与 {b} 按位异或的十进制结果是多少？")
                out.append(item(q, a ^ b, [a & b, a | b, a + b, (a ^ b) + 1], "computer_science", 5, lang, "university"))
    return out


# ------------------------------------------------------------------------------------------------- geography
GEO = [(1, "What is the capital of France?", "Paris", ["Lyon", "Marseille", "Nice"], "法国的首都是哪里？", "巴黎", ["里昂", "马赛", "尼斯"]),
       (1, "What is the capital of China?", "Beijing", ["Shanghai", "Guangzhou", "Nanjing"], "中国的首都是哪里？", "北京", ["上海", "广州", "南京"]),
       (2, "Which is the largest ocean?", "the Pacific Ocean", ["the Atlantic Ocean", "the Indian Ocean", "the Arctic Ocean"],
        "世界上最大的大洋是哪个？", "太平洋", ["大西洋", "印度洋", "北冰洋"]),
       (2, "What is the longest river in China?", "the Yangtze", ["the Yellow River", "the Pearl River", "the Huai River"],
        "中国最长的河流是哪条？", "长江", ["黄河", "珠江", "淮河"]),
       (3, "On which continent is the Sahara desert?", "Africa", ["Asia", "Australia", "South America"],
        "撒哈拉沙漠位于哪个大洲？", "非洲", ["亚洲", "大洋洲", "南美洲"]),
       (3, "What is the highest mountain above sea level?", "Mount Everest", ["K2", "Kangchenjunga", "Mont Blanc"],
        "海拔最高的山峰是哪座？", "珠穆朗玛峰", ["乔戈里峰", "干城章嘉峰", "勃朗峰"]),
       (4, "Which line of latitude receives the Sun directly overhead at the June solstice?", "the Tropic of Cancer",
        ["the Tropic of Capricorn", "the Equator", "the Arctic Circle"],
        "夏至日太阳直射哪条纬线？", "北回归线", ["南回归线", "赤道", "北极圈"]),
       (4, "How many degrees of longitude make one hour of time difference?", "15", ["10", "30", "24"],
        "经度相差多少度，地方时相差一小时？", "15", ["10", "30", "24"]),
       (5, "If it is 12:00 at longitude 120°E, what is the local time at 90°E?", "10:00", ["14:00", "11:00", "9:00"],
        "东经 120° 为 12:00 时，东经 90° 的地方时是几点？", "10:00", ["14:00", "11:00", "9:00"]),
       (5, "At the equinox, what is the Sun's noon altitude at latitude 30°N?", "60°", ["30°", "90°", "45°"],
        "春分日北纬 30° 的正午太阳高度是多少？", "60°", ["30°", "90°", "45°"])]


def geography():
    out = []
    for tier, qe, ae, de, qz, az, dz in GEO:
        out.append(item(qe, ae, de, "geography", tier, "en", "middle" if tier <= 3 else "high"))
        out.append(item(qz, az, dz, "geography", tier, "zh", "middle" if tier <= 3 else "high"))
    return out


def main():
    test = []
    for lang in ("en", "zh"):
        test += mathematics(4, lang) + physics(4, lang) + chemistry(4, lang) + computer_science(3, lang)
    test += biology() + geography()
    dev = []
    for lang in ("en", "zh"):
        dev += mathematics(1, lang)[:3] + physics(1, lang)[:3] + chemistry(1, lang)[:3] + computer_science(1, lang)[:3]
    dev += [item("Which organ do fish use to breathe?", "gills", ["lungs", "skin", "fins"], "biology", 1, "en", "primary"),
            item("鱼用什么器官呼吸？", "鳃", ["肺", "皮肤", "鳍"], "biology", 1, "zh", "primary"),
            item("Which molecule stores genetic information?", "DNA", ["ATP", "glucose", "starch"], "biology", 2, "en", "middle"),
            item("What is the capital of Japan?", "Tokyo", ["Osaka", "Kyoto", "Nagoya"], "geography", 1, "en", "primary"),
            item("日本的首都是哪里？", "东京", ["大阪", "京都", "名古屋"], "geography", 1, "zh", "primary"),
            item("Which is the largest continent?", "Asia", ["Africa", "Europe", "Antarctica"], "geography", 2, "en", "middle")]
    for name, rows in (("test.jsonl", test), ("dev.jsonl", dev)):
        with open(os.path.join(HERE, name), "w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
    print(f"test: {len(test)} items, dev: {len(dev)} items")


if __name__ == "__main__":
    main()
