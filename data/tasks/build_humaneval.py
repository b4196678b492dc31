#!/usr/bin/env python3
"""Builds data/tasks/humaneval.jsonl: HumanEval-format tasks written for qsae (not from any data set).

Pitched at a tiny code model trained on the Python standard library's sources: most tasks are one-line
bodies of the kind the stdlib is full of (return a + b, return not items, return text.upper()), a few
need a short loop. The second group gives the start of the body and asks for the rest (the last line of a
loop, the argument of a return), graded from nearly forced to open, so that the bundled default model
solves some and a damaged one fewer. Each task: task_id "QsaeEval/N", prompt (imports, signature, docstring with an
example), canonical_solution, test (def check(candidate): asserts), entry_point.
Run: python3 data/tasks/build_humaneval.py  (also runs every canonical solution against its test)."""
import json, os

T = []


def task(sig, doc, solution, asserts, imports=""):
    name = sig.split("(")[0]
    prompt = f'{imports}def {sig}:\n    """{doc}\n    """\n'
    test = "\n\ndef check(candidate):\n" + "".join(f"    assert {a}\n" for a in asserts) + "\n"
    T.append({"prompt": prompt, "canonical_solution": solution, "test": test, "entry_point": name})


task("add(a, b)", "Return the sum of a and b.\n    >>> add(2, 3)\n    5", "    return a + b\n",
     ["candidate(2, 3) == 5", "candidate(-1, 1) == 0", "candidate(10, 32) == 42"])
task("subtract(a, b)", "Return a minus b.\n    >>> subtract(5, 3)\n    2", "    return a - b\n",
     ["candidate(5, 3) == 2", "candidate(0, 4) == -4", "candidate(10, 10) == 0"])
task("multiply(a, b)", "Return the product of a and b.\n    >>> multiply(3, 4)\n    12", "    return a * b\n",
     ["candidate(3, 4) == 12", "candidate(0, 7) == 0", "candidate(-2, 5) == -10"])
task("square(x)", "Return x squared.\n    >>> square(3)\n    9", "    return x * x\n",
     ["candidate(3) == 9", "candidate(-4) == 16", "candidate(0) == 0"])
task("negate(x)", "Return the negation of x.\n    >>> negate(5)\n    -5", "    return -x\n",
     ["candidate(5) == -5", "candidate(-2) == 2", "candidate(0) == 0"])
task("is_even(n)", "Return True if n is even, else False.\n    >>> is_even(4)\n    True", "    return n % 2 == 0\n",
     ["candidate(4) is True", "candidate(7) is False", "candidate(0) is True", "candidate(-3) is False"])
task("is_empty(items)", "Return True if items has no elements.\n    >>> is_empty([])\n    True", "    return len(items) == 0\n",
     ["candidate([]) is True", "candidate([1]) is False", "candidate('') is True", "candidate({'a': 1}) is False"])
task("identity(value)", "Return value unchanged.\n    >>> identity(7)\n    7", "    return value\n",
     ["candidate(7) == 7", "candidate('x') == 'x'", "candidate(None) is None"])
task("first(items)", "Return the first element of a non-empty sequence.\n    >>> first([4, 5, 6])\n    4", "    return items[0]\n",
     ["candidate([4, 5, 6]) == 4", "candidate('abc') == 'a'", "candidate((9,)) == 9"])
task("last(items)", "Return the last element of a non-empty sequence.\n    >>> last([4, 5, 6])\n    6", "    return items[-1]\n",
     ["candidate([4, 5, 6]) == 6", "candidate('abc') == 'c'", "candidate((9,)) == 9"])
task("length(items)", "Return the number of elements in items.\n    >>> length([1, 2, 3])\n    3", "    return len(items)\n",
     ["candidate([1, 2, 3]) == 3", "candidate('') == 0", "candidate({'a': 1, 'b': 2}) == 2"])
task("to_upper(text)", "Return text converted to upper case.\n    >>> to_upper('abc')\n    'ABC'", "    return text.upper()\n",
     ["candidate('abc') == 'ABC'", "candidate('Hello World') == 'HELLO WORLD'", "candidate('') == ''"])
task("to_lower(text)", "Return text converted to lower case.\n    >>> to_lower('ABC')\n    'abc'", "    return text.lower()\n",
     ["candidate('ABC') == 'abc'", "candidate('Hello') == 'hello'", "candidate('') == ''"])
task("strip_text(text)", "Return text without leading and trailing whitespace.\n    >>> strip_text('  hi  ')\n    'hi'",
     "    return text.strip()\n", ["candidate('  hi  ') == 'hi'", "candidate('\\tx\\n') == 'x'", "candidate('a b') == 'a b'"])
task("join_words(words)", "Join the words with single spaces.\n    >>> join_words(['a', 'b'])\n    'a b'",
     "    return ' '.join(words)\n", ["candidate(['a', 'b']) == 'a b'", "candidate([]) == ''", "candidate(['one']) == 'one'"])
task("split_words(text)", "Split text on whitespace into a list of words.\n    >>> split_words('a b  c')\n    ['a', 'b', 'c']",
     "    return text.split()\n", ["candidate('a b  c') == ['a', 'b', 'c']", "candidate('') == []", "candidate(' x ') == ['x']"])
task("maximum(values)", "Return the largest value of a non-empty list.\n    >>> maximum([3, 9, 2])\n    9", "    return max(values)\n",
     ["candidate([3, 9, 2]) == 9", "candidate([-5, -1]) == -1", "candidate([4]) == 4"])
task("minimum(values)", "Return the smallest value of a non-empty list.\n    >>> minimum([3, 9, 2])\n    2", "    return min(values)\n",
     ["candidate([3, 9, 2]) == 2", "candidate([-5, -1]) == -5", "candidate([4]) == 4"])
task("total(values)", "Return the sum of the values.\n    >>> total([1, 2, 3])\n    6", "    return sum(values)\n",
     ["candidate([1, 2, 3]) == 6", "candidate([]) == 0", "candidate([-1, 1, 5]) == 5"])
task("sorted_copy(items)", "Return a new sorted list of the items.\n    >>> sorted_copy([3, 1, 2])\n    [1, 2, 3]",
     "    return sorted(items)\n", ["candidate([3, 1, 2]) == [1, 2, 3]", "candidate([]) == []", "candidate(['b', 'a']) == ['a', 'b']"])
task("reverse_list(items)", "Return a new list with the items in reverse order.\n    >>> reverse_list([1, 2, 3])\n    [3, 2, 1]",
     "    return list(reversed(items))\n", ["candidate([1, 2, 3]) == [3, 2, 1]", "candidate([]) == []", "candidate([7]) == [7]"])
task("contains(items, value)", "Return True if value is in items.\n    >>> contains([1, 2], 2)\n    True", "    return value in items\n",
     ["candidate([1, 2], 2) is True", "candidate([1, 2], 5) is False", "candidate('abc', 'b') is True"])
task("is_none(value)", "Return True if value is None.\n    >>> is_none(None)\n    True", "    return value is None\n",
     ["candidate(None) is True", "candidate(0) is False", "candidate('') is False"])
task("get_default(d, key, default)", "Return d[key] if key is in d, else default.\n    >>> get_default({'a': 1}, 'b', 0)\n    0",
     "    return d.get(key, default)\n", ["candidate({'a': 1}, 'a', 0) == 1", "candidate({'a': 1}, 'b', 0) == 0", "candidate({}, 'x', None) is None"])
task("starts_with(text, prefix)", "Return True if text starts with prefix.\n    >>> starts_with('python', 'py')\n    True",
     "    return text.startswith(prefix)\n", ["candidate('python', 'py') is True", "candidate('python', 'on') is False", "candidate('', '') is True"])
task("to_string(value)", "Return value converted to a string.\n    >>> to_string(42)\n    '42'", "    return str(value)\n",
     ["candidate(42) == '42'", "candidate(None) == 'None'", "candidate(1.5) == '1.5'"])
task("absolute(x)", "Return the absolute value of x.\n    >>> absolute(-3)\n    3", "    return abs(x)\n",
     ["candidate(-3) == 3", "candidate(4) == 4", "candidate(0) == 0"])
task("count_char(text, char)", "Return how many times char occurs in text.\n    >>> count_char('banana', 'a')\n    3",
     "    return text.count(char)\n", ["candidate('banana', 'a') == 3", "candidate('', 'x') == 0", "candidate('aaa', 'b') == 0"])
task("keys_of(d)", "Return the keys of the dictionary d as a list.\n    >>> keys_of({'a': 1, 'b': 2})\n    ['a', 'b']",
     "    return list(d.keys())\n", ["candidate({'a': 1, 'b': 2}) == ['a', 'b']", "candidate({}) == []"])
task("factorial(n)", "Return n! for a non-negative integer n.\n    >>> factorial(5)\n    120",
     "    result = 1\n    for i in range(2, n + 1):\n        result *= i\n    return result\n",
     ["candidate(0) == 1", "candidate(1) == 1", "candidate(5) == 120", "candidate(10) == 3628800"])
task("count_positive(values)", "Return how many values are greater than zero.\n    >>> count_positive([1, -2, 3])\n    2",
     "    count = 0\n    for value in values:\n        if value > 0:\n            count += 1\n    return count\n",
     ["candidate([1, -2, 3]) == 2", "candidate([]) == 0", "candidate([0, -1]) == 0"])
task("clamp(x, lo, hi)", "Return x limited to the range [lo, hi].\n    >>> clamp(15, 0, 10)\n    10",
     "    if x < lo:\n        return lo\n    if x > hi:\n        return hi\n    return x\n",
     ["candidate(15, 0, 10) == 10", "candidate(-3, 0, 10) == 0", "candidate(4, 0, 10) == 4"])
task("is_palindrome(text)", "Return True if text reads the same forwards and backwards.\n    >>> is_palindrome('level')\n    True",
     "    return text == text[::-1]\n", ["candidate('level') is True", "candidate('python') is False", "candidate('') is True"])
task("average(values)", "Return the mean of a non-empty list of numbers.\n    >>> average([1, 2, 3])\n    2.0",
     "    return sum(values) / len(values)\n", ["candidate([1, 2, 3]) == 2.0", "candidate([5]) == 5", "abs(candidate([1, 2]) - 1.5) < 1e-9"])
task("even_numbers(values)", "Return the even numbers of values, in order.\n    >>> even_numbers([1, 2, 3, 4])\n    [2, 4]",
     "    return [v for v in values if v % 2 == 0]\n", ["candidate([1, 2, 3, 4]) == [2, 4]", "candidate([]) == []", "candidate([1, 3]) == []"])
task("word_count(text)", "Return the number of whitespace-separated words in text.\n    >>> word_count('a b c')\n    3",
     "    return len(text.split())\n", ["candidate('a b c') == 3", "candidate('') == 0", "candidate('  one  ') == 1"])
task("join_path(folder, name)", "Join a folder and a file name with os.path.join.\n    >>> join_path('a', 'b.txt')\n    'a/b.txt'",
     "    return os.path.join(folder, name)\n", ["candidate('a', 'b.txt') == os.path.join('a', 'b.txt')", "candidate('', 'x') == 'x'"],
     imports="import os\n\n\n")
task("unique(items)", "Return the distinct items of the list in their first order.\n    >>> unique([1, 2, 1, 3])\n    [1, 2, 3]",
     "    seen = []\n    for item in items:\n        if item not in seen:\n            seen.append(item)\n    return seen\n",
     ["candidate([1, 2, 1, 3]) == [1, 2, 3]", "candidate([]) == []", "candidate(['a', 'a']) == ['a']"])


def partial(sig, doc, given, solution, asserts, imports=""):
    """A task whose prompt already holds the first lines of the body (`given`); the model writes the rest."""
    name = sig.split("(")[0]
    prompt = f'{imports}def {sig}:\n    """{doc}\n    """\n{given}'
    test = "\n\ndef check(candidate):\n" + "".join(f"    assert {a}\n" for a in asserts) + "\n"
    T.append({"prompt": prompt, "canonical_solution": solution, "test": test, "entry_point": name})


partial("count_items(items)", "Return how many items there are.", "    count = 0\n    for item in items:\n        count += 1\n",
        "    return count\n", ["candidate([1, 2, 3]) == 3", "candidate([]) == 0", "candidate('ab') == 2"])
partial("sum_values(values)", "Return the sum of the values.", "    total = 0\n    for value in values:\n        total += value\n",
        "    return total\n", ["candidate([1, 2, 3]) == 6", "candidate([]) == 0", "candidate([-4, 4]) == 0"])
partial("doubled(items)", "Return a list with every item doubled.",
        "    result = []\n    for item in items:\n        result.append(item * 2)\n", "    return result\n",
        ["candidate([1, 2]) == [2, 4]", "candidate([]) == []", "candidate(['a']) == ['aa']"])
partial("without_none(items)", "Return the items that are not None.",
        "    result = []\n    for item in items:\n        if item is not None:\n            result.append(item)\n", "    return result\n",
        ["candidate([1, None, 2]) == [1, 2]", "candidate([None]) == []", "candidate([]) == []"])
partial("has_value(items, value)", "Return True if value is one of the items.",
        "    for item in items:\n        if item == value:\n            return True\n", "    return False\n",
        ["candidate([1, 2], 2) is True", "candidate([1, 2], 3) is False", "candidate([], 0) is False"])
partial("first_or_none(items)", "Return the first item, or None if there are none.", "    if not items:\n        return None\n",
        "    return items[0]\n", ["candidate([5, 6]) == 5", "candidate([]) is None", "candidate('xy') == 'x'"])
partial("word_counts(words)", "Return a dict mapping each word to how often it occurs.",
        "    counts = {}\n    for word in words:\n        counts[word] = counts.get(word, 0) + 1\n", "    return counts\n",
        ["candidate(['a', 'b', 'a']) == {'a': 2, 'b': 1}", "candidate([]) == {}"])
partial("line_count(text)", "Return the number of lines in text.", "    lines = text.splitlines()\n", "    return len(lines)\n",
        ["candidate('a\\nb') == 2", "candidate('') == 0", "candidate('one') == 1"])
partial("absolute_value(x)", "Return the absolute value of x.", "    if x < 0:\n        return -x\n", "    return x\n",
        ["candidate(-2) == 2", "candidate(3) == 3", "candidate(0) == 0"])
partial("larger(a, b)", "Return the larger of a and b.", "    if a > b:\n        return a\n", "    return b\n",
        ["candidate(3, 2) == 3", "candidate(2, 3) == 3", "candidate(1, 1) == 1"])
partial("lookup(d, key, default)", "Return d[key], or default if key is missing.", "    if key in d:\n        return d[key]\n",
        "    return default\n", ["candidate({'a': 1}, 'a', 0) == 1", "candidate({}, 'a', 7) == 7"])
partial("to_int(text)", "Return text as an int, or None if it is not a number.",
        "    try:\n        return int(text)\n    except ValueError:\n", "        return None\n",
        ["candidate('12') == 12", "candidate('x') is None", "candidate('-3') == -3"])
partial("read_text(path)", "Return the contents of the file at path.", "    with open(path) as f:\n", "        return f.read()\n",
        ["candidate(os.devnull) == ''", "'def ' in candidate(os.__file__)"],
        imports="import os\n\n\n")
partial("size(items)", "Return the number of items.", "    return len(", "items)\n",
        ["candidate([1, 2]) == 2", "candidate('') == 0"])
partial("shout(text)", "Return text in upper case.", "    return text.", "upper()\n",
        ["candidate('hi') == 'HI'", "candidate('') == ''"])
partial("in_order(items)", "Return the items sorted.", "    return sorted(", "items)\n",
        ["candidate([2, 1]) == [1, 2]", "candidate([]) == []"])
partial("is_string(value)", "Return True if value is a str.", "    return isinstance(value, ", "str)\n",
        ["candidate('a') is True", "candidate(1) is False", "candidate(None) is False"])
partial("base_name(path)", "Return the final component of path.", "    return os.path.", "basename(path)\n",
        ["candidate('/a/b.txt') == 'b.txt'", "candidate('c') == 'c'"], imports="import os\n\n\n")
partial("join_lines(lines)", "Join the lines with newlines.", "    return '\\n'.join(", "lines)\n",
        ["candidate(['a', 'b']) == 'a\\nb'", "candidate([]) == ''"])
partial("strip_all(items)", "Return the strings with surrounding whitespace removed.", "    return [item.strip() for item in ",
        "items]\n", ["candidate([' a ', 'b ']) == ['a', 'b']", "candidate([]) == []"])


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    path = os.path.join(here, "humaneval.jsonl")
    with open(path, "w") as f:
        for i, t in enumerate(T):
            f.write(json.dumps({"task_id": f"QsaeEval/{i}", **t}) + "\n")
    for i, t in enumerate(T):
        program = t["prompt"] + t["canonical_solution"] + "\n" + t["test"] + "\n" + f"check({t['entry_point']})\n"
        exec(compile(program, f"QsaeEval/{i}", "exec"), {"__name__": "__main__"})
    print(f"wrote {path}: {len(T)} tasks, all canonical solutions pass")


if __name__ == "__main__":
    main()
