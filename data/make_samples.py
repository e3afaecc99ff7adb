#!/usr/bin/env python3
"""Writes the shipped sample data (deterministic: fixed seed, stdlib only).

  data/boostqa/sample.jsonl         BoostQA-style STEM question/answer pairs with discipline, grade and difficulty (H1-H5)
  data/knowedu/sample.jsonl         KnowEdu-style educational paragraphs ({"text": ...})
  data/benchmarks/sample_bench.jsonl a small benchmark for the decontamination demo; a few of its items appear
                                     verbatim in the QA set, so `midtrain prepare --decontaminate` removes exactly those

Every answer is computed (arithmetic, algebra, physics formulas, molar masses, base conversions...) or taken from a
fact table, so a tiny model trained on it has real regularities to learn.  Run: python3 data/make_samples.py
"""
import json
import math
import os
import random
import re
from fractions import Fraction

ROOT = os.path.dirname(os.path.abspath(__file__))
R = random.Random(20240613)

GRADES = ["high school", "college", "graduate"]

# ---------------------------------------------------------------- fact tables
ELEMENTS = [  # symbol, name, Z, atomic mass, group/category, phase at room temperature
    ("H", "hydrogen", 1, 1.008, "nonmetal", "gas"), ("He", "helium", 2, 4.003, "noble gas", "gas"),
    ("Li", "lithium", 3, 6.94, "alkali metal", "solid"), ("Be", "beryllium", 4, 9.012, "alkaline earth metal", "solid"),
    ("B", "boron", 5, 10.81, "metalloid", "solid"), ("C", "carbon", 6, 12.011, "nonmetal", "solid"),
    ("N", "nitrogen", 7, 14.007, "nonmetal", "gas"), ("O", "oxygen", 8, 15.999, "nonmetal", "gas"),
    ("F", "fluorine", 9, 18.998, "halogen", "gas"), ("Ne", "neon", 10, 20.180, "noble gas", "gas"),
    ("Na", "sodium", 11, 22.990, "alkali metal", "solid"), ("Mg", "magnesium", 12, 24.305, "alkaline earth metal", "solid"),
    ("Al", "aluminium", 13, 26.982, "post-transition metal", "solid"), ("Si", "silicon", 14, 28.085, "metalloid", "solid"),
    ("P", "phosphorus", 15, 30.974, "nonmetal", "solid"), ("S", "sulfur", 16, 32.06, "nonmetal", "solid"),
    ("Cl", "chlorine", 17, 35.45, "halogen", "gas"), ("Ar", "argon", 18, 39.948, "noble gas", "gas"),
    ("K", "potassium", 19, 39.098, "alkali metal", "solid"), ("Ca", "calcium", 20, 40.078, "alkaline earth metal", "solid"),
    ("Fe", "iron", 26, 55.845, "transition metal", "solid"), ("Cu", "copper", 29, 63.546, "transition metal", "solid"),
    ("Zn", "zinc", 30, 65.38, "transition metal", "solid"), ("Br", "bromine", 35, 79.904, "halogen", "liquid"),
    ("Ag", "silver", 47, 107.87, "transition metal", "solid"), ("I", "iodine", 53, 126.90, "halogen", "solid"),
    ("Au", "gold", 79, 196.97, "transition metal", "solid"), ("Hg", "mercury", 80, 200.59, "transition metal", "liquid"),
    ("Pb", "lead", 82, 207.2, "post-transition metal", "solid"), ("U", "uranium", 92, 238.03, "actinide", "solid"),
]
MASS = {e[0]: e[3] for e in ELEMENTS}
COMPOUNDS = [  # formula, name, composition
    ("H2O", "water", {"H": 2, "O": 1}), ("CO2", "carbon dioxide", {"C": 1, "O": 2}),
    ("NaCl", "sodium chloride", {"Na": 1, "Cl": 1}), ("CH4", "methane", {"C": 1, "H": 4}),
    ("NH3", "ammonia", {"N": 1, "H": 3}), ("C6H12O6", "glucose", {"C": 6, "H": 12, "O": 6}),
    ("H2SO4", "sulfuric acid", {"H": 2, "S": 1, "O": 4}), ("CaCO3", "calcium carbonate", {"Ca": 1, "C": 1, "O": 3}),
    ("HCl", "hydrochloric acid", {"H": 1, "Cl": 1}), ("NaOH", "sodium hydroxide", {"Na": 1, "O": 1, "H": 1}),
    ("C2H5OH", "ethanol", {"C": 2, "H": 6, "O": 1}), ("O2", "oxygen gas", {"O": 2}), ("N2", "nitrogen gas", {"N": 2}),
    ("Fe2O3", "iron(III) oxide", {"Fe": 2, "O": 3}), ("KCl", "potassium chloride", {"K": 1, "Cl": 1}),
    ("MgO", "magnesium oxide", {"Mg": 1, "O": 1}), ("CuSO4", "copper(II) sulfate", {"Cu": 1, "S": 1, "O": 4}),
    ("C3H8", "propane", {"C": 3, "H": 8}), ("HNO3", "nitric acid", {"H": 1, "N": 1, "O": 3}),
    ("AgNO3", "silver nitrate", {"Ag": 1, "N": 1, "O": 3}),
]
ORGANELLES = [
    ("mitochondrion", "produces most of the cell's ATP through cellular respiration"),
    ("ribosome", "synthesizes proteins by translating messenger RNA"),
    ("nucleus", "stores the cell's DNA and controls gene expression"),
    ("chloroplast", "carries out photosynthesis in plant and algal cells"),
    ("Golgi apparatus", "modifies, sorts and packages proteins for secretion"),
    ("lysosome", "digests worn-out organelles and foreign material with hydrolytic enzymes"),
    ("rough endoplasmic reticulum", "folds and modifies proteins made by its attached ribosomes"),
    ("smooth endoplasmic reticulum", "synthesizes lipids and detoxifies drugs"),
    ("cell membrane", "controls what enters and leaves the cell"),
    ("vacuole", "stores water, ions and nutrients and keeps plant cells turgid"),
    ("cell wall", "gives plant cells rigid support and protection"),
    ("centriole", "helps organize the spindle fibres during animal cell division"),
]
BIO_FACTS = [
    ("What molecule carries genetic information in most living organisms?", "DNA (deoxyribonucleic acid)."),
    ("Which process do plants use to convert light energy into chemical energy?", "Photosynthesis."),
    ("What are the four nitrogenous bases of DNA?", "Adenine, thymine, guanine and cytosine."),
    ("In RNA, which base replaces thymine?", "Uracil."),
    ("What is the basic unit of life?", "The cell."),
    ("How many chromosomes does a typical human somatic cell contain?", "46 chromosomes (23 pairs)."),
    ("What type of cell division produces gametes?", "Meiosis."),
    ("Which blood cells carry oxygen?", "Red blood cells (erythrocytes), using hemoglobin."),
    ("What is the function of enzymes?", "They are biological catalysts that lower the activation energy of reactions."),
    ("Which organ produces insulin?", "The pancreas (its beta cells)."),
    ("What is the main function of white blood cells?", "Defending the body against infection."),
    ("What gas do plants release during photosynthesis?", "Oxygen."),
    ("What are the products of aerobic respiration?", "Carbon dioxide, water and ATP."),
    ("Who proposed the theory of evolution by natural selection?", "Charles Darwin (and, independently, Alfred Russel Wallace)."),
]
CODON = {"UUU": "phenylalanine", "AUG": "methionine (start)", "UAA": "stop", "UAG": "stop", "UGA": "stop",
         "GGC": "glycine", "GCU": "alanine", "UGG": "tryptophan", "AAA": "lysine", "GAU": "aspartate",
         "CCC": "proline", "UCU": "serine", "CAU": "histidine", "GUU": "valine", "ACU": "threonine"}
CS_FACTS = [
    ("What is the average-case time complexity of quicksort?", "O(n log n)."),
    ("What is the worst-case time complexity of quicksort?", "O(n^2), when the pivots are consistently poor."),
    ("What is the time complexity of binary search on a sorted array?", "O(log n)."),
    ("What is the time complexity of merge sort?", "O(n log n) in every case."),
    ("Which data structure works on a last-in, first-out basis?", "A stack."),
    ("Which data structure works on a first-in, first-out basis?", "A queue."),
    ("What is the average time to look up a key in a hash table?", "O(1) expected time."),
    ("How many bits are in a byte?", "8 bits."),
    ("What does CPU stand for?", "Central processing unit."),
    ("What is the time complexity of inserting into a balanced binary search tree?", "O(log n)."),
    ("What does the acronym SQL stand for?", "Structured Query Language."),
    ("What is recursion?", "A technique in which a function calls itself on smaller instances of a problem until it reaches a base case."),
    ("What is the time complexity of bubble sort in the worst case?", "O(n^2)."),
    ("What is a compiler?", "A program that translates source code into machine code or another lower-level language."),
]
UNITS = [  # (from, to, factor, quantity)
    ("kilometers", "meters", 1000, "length"), ("meters", "centimeters", 100, "length"),
    ("centimeters", "millimeters", 10, "length"), ("kilograms", "grams", 1000, "mass"),
    ("hours", "minutes", 60, "time"), ("minutes", "seconds", 60, "time"), ("hours", "seconds", 3600, "time"),
    ("liters", "milliliters", 1000, "volume"), ("kilojoules", "joules", 1000, "energy"),
    ("megawatts", "kilowatts", 1000, "power"), ("days", "hours", 24, "time"), ("inches", "centimeters", 2.54, "length"),
    ("miles", "kilometers", 1.609, "length"), ("pounds", "kilograms", 0.4536, "mass"),
]
PLANETS = [("Mercury", 0.39, 88), ("Venus", 0.72, 225), ("Earth", 1.00, 365), ("Mars", 1.52, 687),
           ("Jupiter", 5.20, 4333), ("Saturn", 9.54, 10759), ("Uranus", 19.2, 30687), ("Neptune", 30.1, 60190)]
NAMES = ["Ana", "Ben", "Chen", "Dara", "Eli", "Farah", "Gus", "Hana", "Ivan", "Jia", "Kofi", "Lena", "Mateo", "Nora",
         "Omar", "Priya", "Quinn", "Rosa", "Sami", "Tariq", "Uma", "Vera", "Wen", "Yusuf", "Zoe"]


def fmt(x, nd=3):
    """A number as a student would write it: integers plain, otherwise rounded to nd significant digits."""
    if isinstance(x, Fraction):
        return str(x.numerator) if x.denominator == 1 else f"{x.numerator}/{x.denominator}"
    if abs(x - round(x)) < 1e-9 and abs(x) < 1e12:
        return str(int(round(x)))
    if x == 0:
        return "0"
    digits = nd - int(math.floor(math.log10(abs(x)))) - 1
    v = round(x, max(digits, 0))
    s = f"{v:.{max(digits, 0)}f}"
    return s.rstrip("0").rstrip(".") if "." in s else s


def molar_mass(comp):
    return sum(MASS[s] * n for s, n in comp.items())


# ---------------------------------------------------------------- QA generators: return (question, answer, difficulty, grade)
def q_arith():
    a, b = R.randint(12, 999), R.randint(12, 999)
    op = R.choice(["+", "-", "*"])
    v = a + b if op == "+" else a - b if op == "-" else a * b
    word = {"+": "sum", "-": "difference", "*": "product"}[op]
    q = R.choice([f"Compute {a} {op} {b}.", f"What is {a} {op} {b}?", f"Find the {word} {a} {op} {b}."])
    return q, f"{a} {op} {b} = {v}.", "H1", "high school"


def q_linear():
    a, x, b = R.choice([2, 3, 4, 5, 6, 7, 8, 9, -2, -3]), R.randint(-20, 20), R.randint(-30, 30)
    c = a * x + b
    sb = f"+ {b}" if b >= 0 else f"- {-b}"
    q = R.choice([f"Solve for x: {a}x {sb} = {c}.", f"Find x if {a}x {sb} = {c}.", f"What value of x satisfies {a}x {sb} = {c}?"])
    rhs = c - b
    step = f"Subtract {b} from both sides" if b >= 0 else f"Add {-b} to both sides"
    return q, f"{step}: {a}x = {rhs}. Divide by {a}: x = {x}.", "H2", "high school"


def q_quadratic():
    r1, r2 = R.randint(-9, 9), R.randint(-9, 9)
    b, c = -(r1 + r2), r1 * r2
    terms = "x^2" + (f" + {b}x" if b > 0 else f" - {-b}x" if b < 0 else "") + (f" + {c}" if c > 0 else f" - {-c}" if c < 0 else "")
    lo, hi = sorted((r1, r2))
    roots = f"x = {lo}" if lo == hi else f"x = {lo} or x = {hi}"
    q = R.choice([f"Solve {terms} = 0.", f"Find the roots of {terms} = 0.", f"For which x is {terms} equal to zero?"])
    return q, f"Factor: (x - {lo})(x - {hi}) = 0, so {roots}.".replace("- -", "+ "), "H3", R.choice(["high school", "college"])


def q_derivative():
    n = R.randint(2, 3)
    coefs = [R.randint(1, 9) * R.choice([1, -1]) for _ in range(n + 1)]
    def poly(cs):
        out = []
        deg = len(cs) - 1
        for i, c in enumerate(cs):
            p = deg - i
            if c == 0:
                continue
            mon = "" if p == 0 else "x" if p == 1 else f"x^{p}"
            coef = str(abs(c)) if (abs(c) != 1 or p == 0) else ""
            sign = "-" if c < 0 else "+"
            out.append((sign, coef + mon))
        if not out:
            return "0"
        s = ("-" if out[0][0] == "-" else "") + out[0][1]
        for sign, t in out[1:]:
            s += f" {sign} {t}"
        return s
    deg = len(coefs) - 1
    d = [c * (deg - i) for i, c in enumerate(coefs[:-1])]
    x0 = R.randint(-3, 3)
    val = sum(c * x0 ** (len(d) - 1 - i) for i, c in enumerate(d))
    q = f"Differentiate f(x) = {poly(coefs)} and evaluate f'({x0})."
    return q, f"f'(x) = {poly(d)}, so f'({x0}) = {val}.", "H3", "college"


def q_integral():
    a, n = R.randint(1, 9), R.randint(1, 4)
    lo, hi = 0, R.randint(1, 4)
    val = Fraction(a, n + 1) * (hi ** (n + 1) - lo ** (n + 1))
    q = f"Evaluate the definite integral of {a}x^{n} from x = {lo} to x = {hi}."
    return q, f"An antiderivative is ({a}/{n + 1})x^{n + 1}, so the integral equals {fmt(val)}.", "H4", "college"


def q_percent():
    p, base = R.choice([5, 10, 12, 15, 20, 25, 30, 40, 75]), R.randint(2, 80) * 10
    v = p * base / 100
    q = R.choice([f"What is {p}% of {base}?", f"Calculate {p} percent of {base}."])
    return q, f"{p}/100 x {base} = {fmt(v)}.", "H1", "high school"


def q_gcd():
    a, b = R.randint(12, 300), R.randint(12, 300)
    g = math.gcd(a, b)
    l = a * b // g
    if R.random() < 0.5:
        return f"What is the greatest common divisor of {a} and {b}?", f"gcd({a}, {b}) = {g}.", "H2", "high school"
    return f"What is the least common multiple of {a} and {b}?", f"lcm({a}, {b}) = {a} x {b} / gcd = {l}.", "H2", "high school"


def q_prime():
    n = R.randint(20, 400)
    fs, m, p = [], n, 2
    while m > 1:
        while m % p == 0:
            fs.append(p)
            m //= p
        p += 1
    if len(fs) == 1:
        return f"Is {n} a prime number?", f"Yes, {n} is prime: it has no divisors other than 1 and itself.", "H2", "high school"
    return f"Write the prime factorization of {n}.", f"{n} = {' x '.join(map(str, fs))}.", "H2", "high school"


def q_geometry():
    kind = R.choice(["rect", "circle", "tri", "sphere", "hyp"])
    if kind == "rect":
        w, h = R.randint(2, 40), R.randint(2, 40)
        return f"A rectangle is {w} cm wide and {h} cm tall. What are its area and perimeter?", \
            f"Area = {w} x {h} = {w * h} cm^2; perimeter = 2({w} + {h}) = {2 * (w + h)} cm.", "H1", "high school"
    if kind == "circle":
        r = R.randint(1, 30)
        return f"What is the area of a circle with radius {r} m?", f"A = pi r^2 = pi x {r}^2 = {fmt(math.pi * r * r, 4)} m^2.", "H2", "high school"
    if kind == "tri":
        b, h = R.randint(2, 30), R.randint(2, 30)
        return f"A triangle has base {b} m and height {h} m. What is its area?", f"A = (1/2) x {b} x {h} = {fmt(b * h / 2)} m^2.", "H1", "high school"
    if kind == "sphere":
        r = R.randint(1, 12)
        return f"What is the volume of a sphere of radius {r} cm?", f"V = (4/3) pi r^3 = {fmt(4 / 3 * math.pi * r ** 3, 4)} cm^3.", "H3", "high school"
    a, b = R.choice([(3, 4), (5, 12), (8, 15), (7, 24), (6, 8), (9, 12), (20, 21), (12, 16)])
    return f"A right triangle has legs {a} and {b}. How long is the hypotenuse?", f"c = sqrt({a}^2 + {b}^2) = sqrt({a * a + b * b}) = {int(math.hypot(a, b))}.", "H2", "high school"


def q_series():
    a, d, n = R.randint(1, 20), R.randint(1, 9), R.randint(5, 40)
    s = n * (2 * a + (n - 1) * d) // 2
    return f"Find the sum of the first {n} terms of the arithmetic sequence with first term {a} and common difference {d}.", \
        f"S = n/2 (2a + (n - 1)d) = {n}/2 x ({2 * a} + {(n - 1) * d}) = {s}.", "H3", "high school"


def q_prob():
    k = R.randint(1, 5)
    q = f"A fair six-sided die is rolled. What is the probability of rolling a number greater than {k}?"
    return q, f"There are {6 - k} favourable outcomes out of 6, so P = {fmt(Fraction(6 - k, 6))}.", "H2", "high school"


def q_matrix():
    a, b, c, d = (R.randint(-9, 9) for _ in range(4))
    return f"What is the determinant of the matrix [[{a}, {b}], [{c}, {d}]]?", f"det = ({a})({d}) - ({b})({c}) = {a * d - b * c}.", "H3", "college"


def q_eigen():
    l1, l2 = R.randint(-5, 6), R.randint(-5, 6)
    return f"A 2 x 2 diagonal matrix has diagonal entries {l1} and {l2}. What are its eigenvalues, trace and determinant?", \
        f"The eigenvalues are the diagonal entries {l1} and {l2}; trace = {l1 + l2}; determinant = {l1 * l2}.", "H4", "graduate"


def q_kinematics():
    a, t = R.randint(1, 10), R.randint(2, 15)
    u = R.choice([0, 0, R.randint(1, 20)])
    v, s = u + a * t, u * t + a * t * t / 2
    start = "from rest" if u == 0 else f"from {u} m/s"
    q = f"A cart accelerates uniformly {start} at {a} m/s^2 for {t} s. What is its final speed and how far does it travel?"
    return q, f"v = u + at = {u} + {a} x {t} = {v} m/s; s = ut + at^2/2 = {fmt(s)} m.", "H2", "high school"


def q_force():
    m, a = R.randint(1, 120), R.randint(1, 12)
    return f"What net force is needed to accelerate a {m} kg object at {a} m/s^2?", f"F = ma = {m} x {a} = {m * a} N.", "H1", "high school"


def q_energy():
    m, v = R.randint(1, 90), R.randint(1, 40)
    if R.random() < 0.5:
        return f"What is the kinetic energy of a {m} kg body moving at {v} m/s?", f"KE = (1/2)mv^2 = 0.5 x {m} x {v}^2 = {fmt(0.5 * m * v * v)} J.", "H2", "high school"
    h = R.randint(1, 50)
    return f"How much gravitational potential energy does a {m} kg mass gain when lifted {h} m (g = 9.8 m/s^2)?", \
        f"PE = mgh = {m} x 9.8 x {h} = {fmt(m * 9.8 * h, 4)} J.", "H2", "high school"


def q_ohm():
    v, r = R.choice([1.5, 3, 5, 9, 12, 24, 120, 230]), R.choice([2, 4, 5, 8, 10, 20, 50, 100, 220])
    i = v / r
    return f"A {fmt(v)} V battery drives current through a {r} ohm resistor. What current flows and what power is dissipated?", \
        f"I = V/R = {fmt(v)}/{r} = {fmt(i)} A; P = VI = {fmt(v * i)} W.", "H2", R.choice(["high school", "college"])


def q_density():
    m, vol = R.randint(10, 900), R.randint(5, 300)
    return f"An object has mass {m} g and volume {vol} cm^3. What is its density?", f"rho = m/V = {m}/{vol} = {fmt(m / vol)} g/cm^3.", "H1", "high school"


def q_wave():
    f, lam = R.choice([50, 100, 256, 440, 512, 1000]), R.choice([0.5, 0.75, 1.2, 2, 3.4])
    return f"A wave has frequency {f} Hz and wavelength {fmt(lam)} m. What is its speed?", f"v = f lambda = {f} x {fmt(lam)} = {fmt(f * lam)} m/s.", "H2", "high school"


def q_momentum():
    m1, v1, m2 = R.randint(1, 10), R.randint(1, 12), R.randint(1, 10)
    v = m1 * v1 / (m1 + m2)
    return f"A {m1} kg cart moving at {v1} m/s collides and sticks to a resting {m2} kg cart. What is their common speed?", \
        f"Momentum is conserved: {m1} x {v1} = ({m1} + {m2})v, so v = {fmt(v)} m/s.", "H3", R.choice(["high school", "college"])


def q_pendulum():
    L = R.choice([0.25, 0.5, 1, 1.5, 2, 4, 9.8])
    T = 2 * math.pi * math.sqrt(L / 9.8)
    return f"What is the period of a simple pendulum of length {fmt(L)} m (g = 9.8 m/s^2)?", f"T = 2 pi sqrt(L/g) = {fmt(T)} s.", "H3", "college"


def q_photon():
    lam = R.choice([400, 450, 500, 550, 600, 650, 700])
    e = 6.626e-34 * 2.998e8 / (lam * 1e-9)
    return f"What is the energy of a photon of wavelength {lam} nm?", f"E = hc/lambda = (6.626e-34 x 2.998e8)/({lam}e-9) = {fmt(e / 1e-19)}e-19 J.", "H4", "college"


def q_units():
    frm, to, k, qty = R.choice(UNITS)
    x = R.choice([R.randint(1, 99), R.randint(1, 99) / 10])
    return R.choice([f"Convert {fmt(x)} {frm} to {to}.", f"How many {to} are in {fmt(x)} {frm}?"]), \
        f"1 {frm[:-1] if frm.endswith('s') else frm} = {fmt(k)} {to}, so {fmt(x)} {frm} = {fmt(x * k, 4)} {to}.", "H1", "high school"


def q_temp():
    c = R.randint(-40, 120)
    f = c * 9 / 5 + 32
    return f"Convert {c} degrees Celsius to Fahrenheit and to kelvin.", f"F = C x 9/5 + 32 = {fmt(f)} F; K = C + 273.15 = {fmt(c + 273.15, 5)} K.", "H1", "high school"


def q_molar():
    f, name, comp = R.choice(COMPOUNDS)
    mm = molar_mass(comp)
    parts = " + ".join(f"{n} x {MASS[s]}" for s, n in comp.items())
    if R.random() < 0.5:
        return f"What is the molar mass of {name} ({f})?", f"M = {parts} = {fmt(mm, 5)} g/mol.", "H2", "high school"
    g = R.randint(1, 20) * 10
    return f"How many moles are in {g} g of {name} ({f})?", f"M({f}) = {fmt(mm, 5)} g/mol, so n = {g}/{fmt(mm, 5)} = {fmt(g / mm)} mol.", "H3", R.choice(["high school", "college"])


def q_element():
    sym, name, z, m, cat, phase = R.choice(ELEMENTS)
    k = R.randint(0, 3)
    if k == 0:
        return f"What is the chemical symbol of {name}?", f"{sym}.", "H1", "high school"
    if k == 1:
        return f"What is the atomic number of {name}?", f"{z}: a {name} atom has {z} protons.", "H1", "high school"
    if k == 2:
        return f"Which element has atomic number {z}?", f"{name.capitalize()} ({sym}).", "H1", "high school"
    return f"To which category of elements does {name} belong, and what is its phase at room temperature?", \
        f"{name.capitalize()} is a {cat}; it is a {phase} at room temperature.", "H2", "high school"


def q_ph():
    e = R.randint(1, 13)
    c = R.choice([1, 2, 5])
    ph = -math.log10(c * 10 ** -e)
    kind = "acidic" if ph < 7 else "basic" if ph > 7 else "neutral"
    return f"A solution has a hydrogen ion concentration of {c}e-{e} mol/L. What is its pH?", f"pH = -log10({c}e-{e}) = {fmt(ph)}, so it is {kind}.", "H3", R.choice(["high school", "college"])


def q_gas():
    n, T, V = R.randint(1, 5), R.choice([273, 298, 300, 350, 400]), R.choice([10, 22.4, 24.5, 50])
    p = n * 8.314 * T / (V / 1000)
    return f"What pressure do {n} mol of an ideal gas exert in {fmt(V)} L at {T} K?", f"P = nRT/V = {n} x 8.314 x {T} / {fmt(V / 1000)} m^3 = {fmt(p / 1000, 4)} kPa.", "H3", "college"


def q_dilution():
    c1, v1, v2 = R.choice([0.5, 1, 2, 6, 12]), R.randint(5, 50) * 10, R.randint(60, 200) * 10
    return f"You dilute {v1} mL of a {fmt(c1)} M solution to {v2} mL. What is the new concentration?", \
        f"C1V1 = C2V2, so C2 = {fmt(c1)} x {v1}/{v2} = {fmt(c1 * v1 / v2)} M.", "H2", "high school"


def q_organelle():
    o, f = R.choice(ORGANELLES)
    if R.random() < 0.5:
        return f"What is the function of the {o}?", f"The {o} {f}.", "H1", "high school"
    return f"Which cell structure {f}?", f"The {o}.", "H2", "high school"


def q_biofact():
    q, a = R.choice(BIO_FACTS)
    return q, a, R.choice(["H1", "H2"]), R.choice(["high school", "college"])


def q_dna():
    n = R.randint(6, 12)
    s = "".join(R.choice("ACGT") for _ in range(n))
    comp = s.translate(str.maketrans("ACGT", "TGCA"))
    if R.random() < 0.5:
        return f"Write the complementary DNA strand of {s}.", f"A pairs with T and C with G, so the complement is {comp}.", "H2", "high school"
    return f"Transcribe the DNA template strand {s} into mRNA.", f"The mRNA is {s.translate(str.maketrans('ACGT', 'UGCA'))}.", "H3", "college"


def q_codon():
    c, aa = R.choice(list(CODON.items()))
    return f"Which amino acid does the mRNA codon {c} encode?", f"{c} codes for {aa}.", "H3", "college"


def q_punnett():
    k = R.choice(["AaxAa", "AAxaa", "Aaxaa"])
    if k == "AaxAa":
        return "Two heterozygous parents (Aa x Aa) are crossed. What genotype and phenotype ratios are expected?", \
            "Genotypes 1 AA : 2 Aa : 1 aa; phenotypes 3 dominant : 1 recessive.", "H3", "high school"
    if k == "AAxaa":
        return "A homozygous dominant parent (AA) is crossed with a homozygous recessive parent (aa). What are the offspring?", \
            "All offspring are Aa and show the dominant phenotype.", "H2", "high school"
    return "A heterozygous parent (Aa) is crossed with a homozygous recessive parent (aa). What ratios are expected?", \
        "1 Aa : 1 aa, so half show the dominant and half the recessive phenotype.", "H3", "high school"


def q_hardy():
    p = R.choice([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9])
    q = 1 - p
    return f"In a population in Hardy-Weinberg equilibrium the dominant allele frequency is p = {fmt(p)}. What fraction is heterozygous?", \
        f"q = 1 - p = {fmt(q)}; heterozygotes are 2pq = 2 x {fmt(p)} x {fmt(q)} = {fmt(2 * p * q)}.", "H4", "graduate"


def q_binary():
    n = R.randint(2, 1023)
    k = R.randint(0, 2)
    if k == 0:
        return f"Convert the decimal number {n} to binary.", f"{n} = {bin(n)[2:]} in binary.", "H2", "high school"
    if k == 1:
        return f"Convert the binary number {bin(n)[2:]} to decimal.", f"{bin(n)[2:]} in binary is {n}.", "H2", "high school"
    return f"Write {n} in hexadecimal.", f"{n} = 0x{n:X}.", "H2", "college"


def q_bitwise():
    a, b = R.randint(0, 255), R.randint(0, 255)
    op = R.choice(["AND", "OR", "XOR"])
    v = a & b if op == "AND" else a | b if op == "OR" else a ^ b
    return f"What is {a} {op} {b} (bitwise)?", f"{a:08b} {op} {b:08b} = {v:08b} = {v}.", "H3", "college"


def q_sort():
    xs = [R.randint(0, 99) for _ in range(R.randint(5, 9))]
    return f"Sort the list {xs} in ascending order.", f"{sorted(xs)}.", "H1", "high school"


def q_csfact():
    q, a = R.choice(CS_FACTS)
    return q, a, R.choice(["H2", "H3"]), R.choice(["college", "graduate"])


def q_logic():
    p, q = R.choice([True, False]), R.choice([True, False])
    ex = R.choice(["p AND q", "p OR q", "NOT p OR q", "p XOR q"])
    v = {"p AND q": p and q, "p OR q": p or q, "NOT p OR q": (not p) or q, "p XOR q": p != q}[ex]
    return f"Evaluate {ex} when p = {p} and q = {q}.", f"{ex} = {v}.", "H2", "college"


def q_bigo():
    n = R.choice([8, 16, 32, 64, 128, 256, 512, 1024, 4096])
    steps = int(math.log2(n))
    return f"At most how many comparisons does binary search need on a sorted array of {n} elements?", \
        f"About log2({n}) + 1 = {steps + 1} comparisons.", "H3", "college"


def q_astro():
    name, au, days = R.choice(PLANETS)
    if R.random() < 0.5:
        return f"How long does {name} take to orbit the Sun?", f"About {days} Earth days.", "H2", "high school"
    t = au ** 1.5
    return f"Using Kepler's third law, estimate the orbital period of a planet at {au} AU from the Sun.", \
        f"T^2 = a^3, so T = {au}^1.5 = {fmt(t)} years.", "H4", "college"


def q_entropy():
    n = R.choice([2, 4, 8, 16, 32, 64])
    return f"What is the entropy in bits of a uniform distribution over {n} outcomes?", f"H = log2({n}) = {int(math.log2(n))} bits.", "H4", "graduate"


def q_stats():
    xs = [R.randint(1, 30) for _ in range(R.randint(4, 7))]
    mean = sum(xs) / len(xs)
    var = sum((x - mean) ** 2 for x in xs) / len(xs)
    return f"Compute the mean and the population variance of {xs}.", f"mean = {sum(xs)}/{len(xs)} = {fmt(mean)}; variance = {fmt(var)}.", "H4", R.choice(["college", "graduate"])


def q_complex():
    a, b, c, d = (R.randint(-6, 6) for _ in range(4))
    re_, im = a * c - b * d, a * d + b * c
    return f"Multiply the complex numbers ({a} + {b}i) and ({c} + {d}i).".replace("+ -", "- "), \
        f"({a})({c}) - ({b})({d}) + (({a})({d}) + ({b})({c}))i = {re_} + {im}i.".replace("+ -", "- "), "H5", "graduate"


def q_ode():
    k, y0 = R.choice([0.1, 0.2, 0.5, 1, 2]), R.randint(1, 10)
    t = R.randint(1, 5)
    return f"Solve dy/dt = -{fmt(k)}y with y(0) = {y0} and evaluate y({t}).", f"y(t) = {y0} e^(-{fmt(k)}t), so y({t}) = {fmt(y0 * math.exp(-k * t), 4)}.", "H5", "graduate"


def q_halflife():
    h, n = R.choice([2, 5, 8, 12, 30]), R.randint(1, 5)
    m0 = R.choice([80, 100, 160, 200, 640])
    return f"A {m0} g sample has a half-life of {h} years. How much remains after {h * n} years?", \
        f"{h * n} years is {n} half-lives, so {m0} x (1/2)^{n} = {fmt(m0 / 2 ** n)} g remain.", "H3", R.choice(["high school", "college"])


GEN = {  # discipline -> generators
    "mathematics": [q_arith, q_linear, q_quadratic, q_derivative, q_integral, q_percent, q_gcd, q_prime, q_geometry,
                    q_series, q_prob, q_matrix, q_eigen, q_stats, q_complex, q_ode],
    "physics": [q_kinematics, q_force, q_energy, q_ohm, q_density, q_wave, q_momentum, q_pendulum, q_photon, q_units,
                q_temp, q_halflife, q_astro],
    "chemistry": [q_molar, q_element, q_ph, q_gas, q_dilution, q_molar, q_element],
    "biology": [q_organelle, q_biofact, q_dna, q_codon, q_punnett, q_hardy],
    "computer science": [q_binary, q_bitwise, q_sort, q_csfact, q_logic, q_bigo, q_entropy],
}
DISC_WEIGHTS = {"mathematics": 0.3, "physics": 0.25, "chemistry": 0.17, "biology": 0.13, "computer science": 0.15}

# Hand-written items with distinctive wording. The first five also appear verbatim in the sample benchmark, so
# decontamination removes exactly those documents from the QA set.
UNIQUE_QA = [
    ("chemistry", "If a chemist heats 2.00 grams of magnesium ribbon in pure oxygen until it burns completely, what mass of magnesium oxide is formed?", "Mg + 1/2 O2 -> MgO: 2.00 g / 24.305 g/mol = 0.0823 mol Mg, giving 0.0823 x 40.304 = 3.32 g of MgO."),
    ("physics", "A lighthouse keeper drops a brass key from the gallery rail forty-five meters above the rocks; ignoring air resistance, how long does the key fall?", "t = sqrt(2h/g) = sqrt(2 x 45 / 9.8) = 3.03 s."),
    ("biology", "Why do the leaves of deciduous trees in temperate forests turn yellow and orange before they fall in autumn?", "Chlorophyll breaks down as days shorten, revealing carotenoid pigments that were present all along."),
    ("computer science", "Explain why a recursive Fibonacci function without memoization becomes painfully slow for inputs around fifty.", "Each call spawns two more, so the number of calls grows like phi^n (about 1.6^n); memoization makes it linear."),
    ("mathematics", "A gardener plants tulip bulbs in a triangular pattern with one bulb in the first row, two in the second, and so on; how many bulbs fill twenty rows?", "1 + 2 + ... + 20 = 20 x 21 / 2 = 210 bulbs."),
    ("physics", "Why does a spinning figure skater speed up when she pulls her arms close to her body?", "Angular momentum L = I omega is conserved; pulling the arms in lowers the moment of inertia I, so omega rises."),
    ("chemistry", "Why does table salt dissolve readily in water but hardly at all in cooking oil?", "Water is polar and stabilizes the Na+ and Cl- ions by hydration; nonpolar oil cannot."),
    ("biology", "What would happen to a red blood cell placed in distilled water, and why?", "Water enters by osmosis because the cell interior is hypertonic; the cell swells and may burst (hemolysis)."),
    ("mathematics", "Why is the square root of two irrational?", "If sqrt(2) = p/q in lowest terms then p^2 = 2q^2, so p and then q are even, a contradiction."),
    ("computer science", "What is the difference between a process and a thread?", "A process has its own address space; threads of one process share memory but have separate stacks and registers."),
]


def make_qa(n):
    rows, seen = [], set()
    discs = list(DISC_WEIGHTS)
    wts = [DISC_WEIGHTS[d] for d in discs]
    for disc, q, a in UNIQUE_QA:
        rows.append({"question": q, "answer": a, "discipline": disc, "grade": "college", "difficulty": "H3"})
        seen.add(q)
    tries = 0
    while len(rows) < n and tries < 50 * n:
        tries += 1
        disc = R.choices(discs, wts)[0]
        q, a, diff, grade = R.choice(GEN[disc])()
        if q in seen:
            continue
        seen.add(q)
        rows.append({"question": q, "answer": a, "discipline": disc, "grade": grade, "difficulty": diff})
    R.shuffle(rows)
    return rows


# ---------------------------------------------------------------- KnowEdu-style paragraphs
def para_element():
    sym, name, z, m, cat, phase = R.choice(ELEMENTS)
    k = R.randint(2, 9)
    return (f"{name.capitalize()} is a chemical element with the symbol {sym} and atomic number {z}. "
            f"Every {name} atom has {z} protons in its nucleus, and its standard atomic mass is about {m} atomic mass units. "
            f"It is classified as a {cat} and is a {phase} at room temperature. "
            f"One mole of {name} atoms has a mass of about {fmt(m, 4)} grams, so {k} moles weigh about {fmt(k * m, 4)} grams.")


def para_compound():
    f, name, comp = R.choice(COMPOUNDS)
    mm = molar_mass(comp)
    atoms = ", ".join(f"{n} {[e[1] for e in ELEMENTS if e[0] == s][0]} atom{'s' if n > 1 else ''}" for s, n in comp.items())
    g = R.randint(1, 10) * 18
    return (f"The formula of {name} is {f}: each molecule or formula unit contains {atoms}. "
            f"Adding the atomic masses gives a molar mass of {fmt(mm, 5)} grams per mole. "
            f"To find how many moles are in a sample, divide its mass by the molar mass; for example, {g} grams of {name} "
            f"contain {fmt(g / mm)} moles, which is about {fmt(g / mm * 6.022e23 / 1e23)} x 10^23 formula units.")


def para_kinematics():
    a, t = R.randint(1, 9), R.randint(2, 12)
    return ("When an object moves with constant acceleration, its velocity changes by the same amount every second. "
            "The final velocity is v = u + at and the distance covered is s = ut + at^2/2, where u is the initial velocity. "
            f"For instance, a bicycle that starts from rest and accelerates at {a} m/s^2 reaches {a * t} m/s after {t} seconds "
            f"and covers {fmt(a * t * t / 2)} meters in that time. Doubling the time quadruples the distance, because distance "
            "grows with the square of time.")


def para_newton():
    m, a = R.randint(2, 80), R.randint(1, 10)
    return ("Newton's second law states that the net force on a body equals its mass times its acceleration, F = ma. "
            "Force is measured in newtons, where one newton accelerates one kilogram by one meter per second squared. "
            f"A {m} kg crate pushed with a net force of {m * a} N therefore accelerates at {a} m/s^2. "
            "Newton's third law adds that forces come in pairs: when you push on a wall, the wall pushes back on you with "
            "an equal and opposite force.")


def para_ohm():
    v, r = R.choice([3, 6, 9, 12, 24]), R.choice([2, 3, 4, 6, 8, 12])
    return ("Ohm's law relates the voltage across a resistor to the current through it: V = IR. "
            f"If a {v} V source is connected to a {r} ohm resistor, the current is {fmt(v / r)} A and the resistor dissipates "
            f"P = V^2/R = {fmt(v * v / r)} W as heat. Resistors in series add, R = R1 + R2, while resistors in parallel combine "
            f"as 1/R = 1/R1 + 1/R2, so two {r} ohm resistors in parallel act like a single {fmt(r / 2)} ohm resistor.")


def para_energy():
    m, h = R.randint(1, 50), R.randint(2, 40)
    v = math.sqrt(2 * 9.8 * h)
    return ("Energy is conserved: it changes form but the total stays the same in an isolated system. "
            f"A {m} kg ball held {h} m above the ground has gravitational potential energy mgh = {fmt(m * 9.8 * h, 4)} J. "
            f"If it falls freely, this energy turns into kinetic energy, and just before impact its speed is sqrt(2gh) = {fmt(v)} m/s. "
            "In real falls some energy is lost to air resistance and ends up as heat.")


def para_cell():
    (o1, f1), (o2, f2), (o3, f3) = R.sample(ORGANELLES, 3)
    return (f"Cells contain specialised structures called organelles, each with its own job. The {o1} {f1}, "
            f"while the {o2} {f2}. The {o3} {f3}. Together these structures let the cell take in nutrients, release energy, "
            "build the molecules it needs and divide to form new cells.")


def para_dna():
    s = "".join(R.choice("ACGT") for _ in range(R.randint(6, 10)))
    return ("DNA is a double helix made of two strands of nucleotides. Each nucleotide carries one of four bases: adenine, "
            "thymine, guanine or cytosine. Adenine always pairs with thymine and guanine with cytosine, so one strand "
            f"determines the other. The strand {s} pairs with {s.translate(str.maketrans('ACGT', 'TGCA'))}. During transcription "
            f"RNA polymerase copies a gene into messenger RNA, using uracil instead of thymine, so the template {s} gives the "
            f"mRNA {s.translate(str.maketrans('ACGT', 'UGCA'))}.")


def para_photosynthesis():
    n = R.choice([1, 2, 3, 6, 12])
    return ("Photosynthesis converts light energy into chemical energy stored in glucose. The overall reaction is "
            "6 CO2 + 6 H2O -> C6H12O6 + 6 O2, and it takes place in the chloroplasts of plant cells. "
            f"Because six molecules of carbon dioxide are needed for each glucose molecule, making {n} glucose molecules "
            f"uses {6 * n} molecules of carbon dioxide and releases {6 * n} molecules of oxygen. "
            "Cellular respiration runs the reaction in reverse to release the stored energy as ATP.")


def para_binary():
    n = R.randint(5, 255)
    return ("Computers store numbers in binary, a base-two system that uses only the digits 0 and 1. Each position is worth "
            f"twice the position to its right. The decimal number {n} is written {bin(n)[2:]} in binary and {n:X} in "
            f"hexadecimal, where each hexadecimal digit stands for four bits. With {max(n.bit_length(), 1)} bits we can represent every "
            f"whole number from 0 to {2 ** max(n.bit_length(), 1) - 1}.")


def para_algorithms():
    n = R.choice([1000, 10000, 100000, 1000000])
    lg = math.log2(n)
    return ("The efficiency of an algorithm is described by how its running time grows with the input size n. "
            f"Linear search checks items one by one and may need {n} comparisons for a list of {n} items, while binary search "
            f"on a sorted list halves the range each step and needs only about {math.ceil(lg)} comparisons. "
            f"Sorting by repeated swapping, as bubble sort does, takes on the order of n^2 = {n * n:,} steps, whereas merge sort "
            f"needs about n log2 n = {fmt(n * lg, 3)} steps.")


def para_equation():
    a, x, b = R.randint(2, 9), R.randint(-10, 15), R.randint(1, 30)
    c = a * x + b
    return ("To solve a linear equation, perform the same operation on both sides until the unknown stands alone. "
            f"Consider {a}x + {b} = {c}. Subtracting {b} from both sides gives {a}x = {c - b}, and dividing by {a} gives x = {x}. "
            f"We can check the answer by substitution: {a} x {x} + {b} = {c}, which matches the right-hand side.")


def para_quadratic():
    r1, r2 = R.randint(-6, 6), R.randint(-6, 6)
    b, c = -(r1 + r2), r1 * r2
    disc = b * b - 4 * c
    return ("A quadratic equation ax^2 + bx + c = 0 has solutions x = (-b +- sqrt(b^2 - 4ac)) / 2a. The quantity b^2 - 4ac "
            "is the discriminant: when it is positive there are two real roots, when it is zero there is one repeated root, "
            f"and when it is negative there are no real roots. For x^2 + ({b})x + ({c}) = 0 the discriminant is {disc}, and the "
            f"roots are {min(r1, r2)} and {max(r1, r2)}.")


def para_geometry():
    r = R.randint(1, 20)
    return ("The circumference of a circle is C = 2 pi r and its area is A = pi r^2, where pi is about 3.14159. "
            f"A circle of radius {r} cm has circumference {fmt(2 * math.pi * r, 4)} cm and area {fmt(math.pi * r * r, 4)} cm^2. "
            "Doubling the radius doubles the circumference but multiplies the area by four.")


def para_probability():
    k = R.randint(2, 5)
    return ("Probability measures how likely an event is, on a scale from 0 (impossible) to 1 (certain). For equally likely "
            "outcomes it is the number of favourable outcomes divided by the total number of outcomes. "
            f"When a fair coin is tossed {k} times there are 2^{k} = {2 ** k} equally likely sequences, and only one of them "
            f"is all heads, so the probability of {k} heads in a row is 1/{2 ** k}.")


def para_units():
    frm, to, k, qty = R.choice(UNITS)
    x = R.randint(2, 40)
    return (f"Units of {qty} can be converted with a conversion factor. Since one "
            f"{frm[:-1] if frm.endswith('s') else frm} equals {fmt(k)} {to}, "
            f"{x} {frm} equal {x} x {fmt(k)} = {fmt(x * k, 4)} {to}. Writing the factor as a fraction whose units cancel, "
            f"({fmt(k)} {to}) / (1 {frm[:-1] if frm.endswith('s') else frm}), avoids mistakes.")


def para_planet():
    name, au, days = R.choice(PLANETS)
    return (f"{name} orbits the Sun at an average distance of {au} astronomical units, where one astronomical unit is the "
            f"mean distance between the Earth and the Sun, about 150 million kilometers. One {name} year lasts about {days} "
            f"Earth days. Kepler's third law says the square of the orbital period in years equals the cube of the distance "
            f"in astronomical units, and indeed {au}^1.5 is about {fmt(au ** 1.5)} years.")


def para_acid():
    e = R.randint(1, 13)
    kind = "acidic" if e < 7 else "basic" if e > 7 else "neutral"
    return ("The pH scale measures how acidic or basic a solution is. It is defined as pH = -log10[H+], where [H+] is the "
            f"hydrogen ion concentration in moles per liter. A solution with [H+] = 1e-{e} mol/L has pH {e} and is {kind}. "
            "Each step of one pH unit is a tenfold change in concentration, so pH 3 is ten times more acidic than pH 4.")


def para_genetics():
    return ("Gregor Mendel discovered that traits are passed on by discrete factors, now called genes, that come in versions "
            "called alleles. An organism inherits one allele from each parent. When two heterozygous parents (Aa) are "
            "crossed, a Punnett square predicts offspring in the ratio 1 AA : 2 Aa : 1 aa, so three quarters show the "
            "dominant trait and one quarter the recessive trait.")


PARAS = [para_element, para_compound, para_kinematics, para_newton, para_ohm, para_energy, para_cell, para_dna,
         para_photosynthesis, para_binary, para_algorithms, para_equation, para_quadratic, para_geometry,
         para_probability, para_units, para_planet, para_acid, para_genetics]


def make_edu(n):
    docs = []
    for _ in range(n):
        k = R.randint(1, 3)  # a document is one to three paragraphs
        docs.append({"text": "\n\n".join(R.choice(PARAS)() for _ in range(k))})
    return docs


# ---------------------------------------------------------------- sample benchmark
BENCH_NOVEL = [
    {"question": "A sealed syringe of air at 100 kPa is slowly compressed from 60 mL to 20 mL at constant temperature; what is the final pressure?",
     "choices": ["33 kPa", "100 kPa", "300 kPa", "600 kPa"], "answer": "300 kPa"},
    {"question": "Which enzyme unwinds the DNA double helix at the replication fork during DNA replication?",
     "choices": ["ligase", "helicase", "primase", "amylase"], "answer": "helicase"},
    {"question": "What is the smallest number of colours that always suffices to colour any planar map so that neighbouring regions differ?",
     "choices": ["three", "four", "five", "six"], "answer": "four"},
    {"question": "In the context of operating systems, what problem does the banker's algorithm help to avoid when allocating resources?",
     "choices": ["starvation", "deadlock", "thrashing", "fragmentation"], "answer": "deadlock"},
    {"question": "Which noble gas is the most abundant in the atmosphere of the Earth, making up almost one percent of dry air?",
     "choices": ["neon", "helium", "argon", "krypton"], "answer": "argon"},
    {"question": "A satellite in a circular orbit is moved to an orbit with four times the radius; by what factor does its orbital period change?",
     "choices": ["2", "4", "8", "16"], "answer": "8"},
    {"question": "Which organelle in eukaryotic cells is thought to descend from free-living bacteria engulfed by an ancestral host cell?",
     "choices": ["nucleus", "mitochondrion", "Golgi apparatus", "lysosome"], "answer": "mitochondrion"},
    {"question": "How many distinct ways can the letters of the word LEVEL be arranged if identical letters are indistinguishable?",
     "choices": ["20", "30", "60", "120"], "answer": "30"},
]


def make_bench():
    items = []
    for disc, q, a in UNIQUE_QA[:5]:  # contaminated: verbatim in the QA set
        items.append({"question": q, "choices": [a, "none of the above"], "answer": a, "subject": disc})
    for it in BENCH_NOVEL:
        items.append(dict(it, subject="science"))
    R.shuffle(items)
    return items


# ---------------------------------------------------------------- checks and output
def norm_words(s):
    """The decontamination normalization of midtrain prepare: lowercase, punctuation stripped, whitespace-split."""
    return re.sub(r"[^\w\s]|_", "", s.lower()).split()


def ngrams(words, n=10):
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def bench_grams(items):
    out = set()
    for it in items:
        for k in ("text", "question", "answer", "choices"):
            v = it.get(k)
            for s in (v if isinstance(v, list) else [v]):
                if isinstance(s, str):
                    out |= ngrams(norm_words(s))
    return out


def write_jsonl(path, rows):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def main():
    qa = make_qa(5200)
    edu = make_edu(1600)
    bench = make_bench()
    grams = bench_grams(bench)
    hit_qa = sum(1 for r in qa if ngrams(norm_words(r["question"] + "\n" + r["answer"])) & grams)
    hit_edu = sum(1 for r in edu if ngrams(norm_words(r["text"])) & grams)
    assert hit_qa == 5 and hit_edu == 0, (hit_qa, hit_edu)  # the demo removes exactly the 5 planted QA items
    write_jsonl(os.path.join(ROOT, "boostqa", "sample.jsonl"), qa)
    write_jsonl(os.path.join(ROOT, "knowedu", "sample.jsonl"), edu)
    write_jsonl(os.path.join(ROOT, "benchmarks", "sample_bench.jsonl"), bench)
    print(f"boostqa: {len(qa)} QA pairs; knowedu: {len(edu)} documents; bench: {len(bench)} items "
          f"({hit_qa} QA pairs share a 10-gram with it)")


if __name__ == "__main__":
    main()
