#!/usr/bin/env python3
"""Builds the bundled prompt sets of qsae from the function specs below (written for qsae).

prompts.jsonl    : about 500 short coding prompts, {"prompt": ..., "style": ..., "name": ...} per line:
                   "def"       a function signature and docstring (CodeSearchNet-style, what a code model continues)
                   "method"    the same as a method of a small class
                   "instruct"  a one-line instruction ("Write a Python function ...")
instructions.txt : the instruction prompts, one per line (the .txt format `qsae extract` reads)

Run: python3 data/prompts/build.py  (deterministic; no randomness)."""
import json, os

# (name, arguments, docstring): short, regular functions of the kind the Python standard library is full of.
SPECS = [
    ("add", "a, b", "Return the sum of a and b."),
    ("subtract", "a, b", "Return a minus b."),
    ("multiply", "a, b", "Return the product of a and b."),
    ("divide", "a, b", "Return a divided by b, or None when b is zero."),
    ("square", "x", "Return x squared."),
    ("cube", "x", "Return x to the third power."),
    ("negate", "x", "Return the negation of x."),
    ("absolute", "x", "Return the absolute value of x."),
    ("is_even", "n", "Return True if n is even."),
    ("is_odd", "n", "Return True if n is odd."),
    ("is_positive", "x", "Return True if x is greater than zero."),
    ("is_zero", "x", "Return True if x equals zero."),
    ("sign", "x", "Return -1, 0 or 1 according to the sign of x."),
    ("clamp", "x, lo, hi", "Limit x to the range [lo, hi]."),
    ("average", "values", "Return the arithmetic mean of a non-empty list of numbers."),
    ("total", "values", "Return the sum of all values in the list."),
    ("product", "values", "Return the product of all values in the list."),
    ("maximum", "values", "Return the largest item of the list."),
    ("minimum", "values", "Return the smallest item of the list."),
    ("value_range", "values", "Return the difference between the largest and the smallest value."),
    ("factorial", "n", "Return n factorial for a non-negative integer n."),
    ("fibonacci", "n", "Return the n-th Fibonacci number, with fibonacci(0) == 0."),
    ("gcd", "a, b", "Return the greatest common divisor of a and b."),
    ("lcm", "a, b", "Return the least common multiple of a and b."),
    ("is_prime", "n", "Return True if n is a prime number."),
    ("primes_below", "n", "Return a list of the prime numbers smaller than n."),
    ("digit_sum", "n", "Return the sum of the decimal digits of n."),
    ("count_digits", "n", "Return the number of decimal digits of a non-negative integer."),
    ("power_of_two", "n", "Return True if n is a power of two."),
    ("celsius_to_fahrenheit", "c", "Convert a temperature from Celsius to Fahrenheit."),
    ("fahrenheit_to_celsius", "f", "Convert a temperature from Fahrenheit to Celsius."),
    ("percent", "part, whole", "Return part as a percentage of whole."),
    ("round_to", "x, places", "Round x to the given number of decimal places."),
    ("is_between", "x, lo, hi", "Return True if lo <= x <= hi."),
    ("first", "items", "Return the first item of a sequence."),
    ("last", "items", "Return the last item of a sequence."),
    ("second", "items", "Return the second item of a sequence."),
    ("head", "items, n", "Return the first n items of a list."),
    ("tail", "items, n", "Return the last n items of a list."),
    ("length", "items", "Return the number of items."),
    ("is_empty", "items", "Return True if the container has no items."),
    ("reverse_list", "items", "Return a new list with the items in reverse order."),
    ("sorted_copy", "items", "Return a sorted copy of the list."),
    ("sort_descending", "items", "Return the items sorted from largest to smallest."),
    ("unique", "items", "Return the distinct items, keeping their first order."),
    ("count_occurrences", "items, value", "Return how many times value appears in items."),
    ("index_of", "items, value", "Return the index of value in items, or -1 if it is missing."),
    ("contains", "items, value", "Return True if value is in items."),
    ("remove_value", "items, value", "Return a list without any occurrence of value."),
    ("flatten", "nested", "Flatten a list of lists into one list."),
    ("chunk", "items, size", "Split a list into consecutive chunks of the given size."),
    ("pairwise_sums", "items", "Return the sums of neighbouring items."),
    ("running_total", "values", "Return the running totals of the values."),
    ("zip_lists", "a, b", "Return a list of pairs from two lists."),
    ("interleave", "a, b", "Merge two lists by taking items alternately."),
    ("rotate_left", "items, k", "Rotate a list k positions to the left."),
    ("evens", "values", "Return the even numbers of the list."),
    ("odds", "values", "Return the odd numbers of the list."),
    ("positives", "values", "Return the values that are greater than zero."),
    ("squares", "values", "Return the squares of the values."),
    ("doubled", "values", "Return each value multiplied by two."),
    ("count_if_positive", "values", "Count the values that are greater than zero."),
    ("all_equal", "items", "Return True if all items are equal."),
    ("any_negative", "values", "Return True if any value is negative."),
    ("second_largest", "values", "Return the second largest distinct value."),
    ("most_common", "items", "Return the item that appears most often."),
    ("dedupe_sorted", "items", "Remove consecutive duplicates from a sorted list."),
    ("binary_search", "items, target", "Return the index of target in a sorted list, or -1."),
    ("linear_search", "items, target", "Return the first index of target, or -1."),
    ("merge_sorted", "a, b", "Merge two sorted lists into one sorted list."),
    ("bubble_sort", "items", "Sort a list with bubble sort and return it."),
    ("insertion_sort", "items", "Sort a list with insertion sort and return it."),
    ("is_sorted", "items", "Return True if the list is sorted in ascending order."),
    ("to_upper", "text", "Return the text in upper case."),
    ("to_lower", "text", "Return the text in lower case."),
    ("capitalize_words", "text", "Capitalize the first letter of every word."),
    ("reverse_string", "text", "Return the text reversed."),
    ("is_palindrome", "text", "Return True if the text reads the same backwards."),
    ("count_vowels", "text", "Return the number of vowels in the text."),
    ("count_words", "text", "Return the number of whitespace-separated words."),
    ("word_lengths", "text", "Return the length of each word in the text."),
    ("longest_word", "text", "Return the longest word of the text."),
    ("strip_spaces", "text", "Remove leading and trailing whitespace."),
    ("remove_spaces", "text", "Remove every space character from the text."),
    ("replace_char", "text, old, new", "Replace every occurrence of old with new."),
    ("starts_with", "text, prefix", "Return True if text starts with prefix."),
    ("ends_with", "text, suffix", "Return True if text ends with suffix."),
    ("remove_prefix", "text, prefix", "Remove prefix from the start of text if it is there."),
    ("remove_suffix", "text, suffix", "Remove suffix from the end of text if it is there."),
    ("repeat_string", "text, n", "Return the text repeated n times."),
    ("join_words", "words", "Join the words with single spaces."),
    ("split_words", "text", "Split the text into words."),
    ("split_lines", "text", "Split the text into lines."),
    ("join_lines", "lines", "Join the lines with newline characters."),
    ("char_count", "text", "Return a dict mapping each character to its count."),
    ("is_digit_string", "text", "Return True if the text consists only of digits."),
    ("is_blank", "text", "Return True if the text is empty or only whitespace."),
    ("initials", "name", "Return the initials of a full name."),
    ("snake_to_camel", "name", "Convert a snake_case name to camelCase."),
    ("camel_to_snake", "name", "Convert a camelCase name to snake_case."),
    ("pad_left", "text, width", "Pad the text with spaces on the left to the given width."),
    ("truncate", "text, n", "Shorten text to at most n characters."),
    ("count_substring", "text, sub", "Return how many times sub occurs in text."),
    ("first_char", "text", "Return the first character of the text, or an empty string."),
    ("last_char", "text", "Return the last character of the text, or an empty string."),
    ("is_anagram", "a, b", "Return True if a and b are anagrams of each other."),
    ("caesar_shift", "text, k", "Shift every lowercase letter k places in the alphabet."),
    ("dict_keys", "d", "Return the keys of the dictionary as a list."),
    ("dict_values", "d", "Return the values of the dictionary as a list."),
    ("get_or_default", "d, key, default", "Return d[key], or default if the key is missing."),
    ("invert_dict", "d", "Swap the keys and values of a dictionary."),
    ("merge_dicts", "a, b", "Return a new dict with the items of a and b; b wins on conflicts."),
    ("count_keys", "d", "Return the number of keys in the dictionary."),
    ("has_key", "d, key", "Return True if key is in the dictionary."),
    ("filter_dict", "d, keys", "Return a dict with only the given keys."),
    ("sort_by_value", "d", "Return the keys sorted by their values."),
    ("group_by_length", "words", "Group words in a dict keyed by their length."),
    ("increment", "counter, key", "Add one to counter[key], starting from zero."),
    ("word_frequencies", "text", "Return a dict of word counts."),
    ("max_key", "d", "Return the key with the largest value."),
    ("to_pairs", "d", "Return the items of the dict as a list of (key, value) tuples."),
    ("from_pairs", "pairs", "Build a dict from a list of (key, value) pairs."),
    ("is_none", "value", "Return True if value is None."),
    ("default_if_none", "value, default", "Return value, or default when value is None."),
    ("to_int", "text", "Convert the text to an integer."),
    ("to_float", "text", "Convert the text to a float."),
    ("to_str", "value", "Convert the value to a string."),
    ("to_bool", "text", "Return True for 'yes', 'true' or '1', in any case."),
    ("safe_int", "text", "Convert text to int, or return None if it is not a number."),
    ("is_int", "value", "Return True if value is an int."),
    ("type_name", "value", "Return the name of the type of value."),
    ("make_pair", "a, b", "Return a tuple of a and b."),
    ("swap", "pair", "Return the pair with its two items swapped."),
    ("read_file", "path", "Return the contents of a text file."),
    ("write_file", "path, text", "Write text to a file, replacing its contents."),
    ("append_line", "path, line", "Append a line to a text file."),
    ("count_lines", "path", "Return the number of lines in a text file."),
    ("file_extension", "path", "Return the extension of a file name, without the dot."),
    ("base_name", "path", "Return the last component of a path."),
    ("join_path", "folder, name", "Join a folder and a file name."),
    ("file_exists", "path", "Return True if the path exists."),
    ("list_files", "folder", "Return the sorted names of the files in a folder."),
    ("read_json", "path", "Load a JSON file and return the value."),
    ("write_json", "path, value", "Save a value as JSON to a file."),
    ("parse_csv_line", "line", "Split a line of comma-separated values."),
    ("parse_key_value", "line", "Parse 'key=value' into a (key, value) tuple."),
    ("parse_int_list", "text", "Parse comma-separated integers into a list."),
    ("format_price", "amount", "Format an amount of money with two decimals."),
    ("format_percent", "ratio", "Format a ratio as a percentage string."),
    ("is_leap_year", "year", "Return True if year is a leap year."),
    ("days_in_month", "year, month", "Return the number of days in a month."),
    ("seconds_to_minutes", "seconds", "Convert seconds to whole minutes."),
    ("hours_minutes", "minutes", "Split minutes into (hours, minutes)."),
    ("timestamp", "", "Return the current time as a Unix timestamp."),
    ("today_iso", "", "Return today's date in ISO format."),
    ("distance", "p, q", "Return the Euclidean distance between two points."),
    ("midpoint", "p, q", "Return the midpoint of two points."),
    ("dot", "a, b", "Return the dot product of two vectors."),
    ("norm", "v", "Return the Euclidean length of a vector."),
    ("matrix_transpose", "m", "Return the transpose of a matrix given as a list of rows."),
    ("identity_matrix", "n", "Return the n by n identity matrix."),
    ("area_of_circle", "r", "Return the area of a circle of radius r."),
    ("area_of_rectangle", "w, h", "Return the area of a w by h rectangle."),
    ("hypotenuse", "a, b", "Return the hypotenuse of a right triangle."),
    ("stack_push", "stack, item", "Push an item onto a stack kept in a list."),
    ("stack_pop", "stack", "Pop the top item of a stack, or None if it is empty."),
    ("queue_get", "queue", "Remove and return the first item of a queue list."),
    ("balanced_brackets", "text", "Return True if the brackets in text are balanced."),
    ("retry", "func, attempts", "Call func until it succeeds, at most attempts times."),
    ("memoize", "func", "Return a version of func that caches its results."),
    ("compose", "f, g", "Return a function computing f(g(x))."),
    ("apply_all", "funcs, x", "Apply each function to x and return the results."),
]

CLASSES = ["Helper", "Utils", "Toolbox", "Calculator", "TextTools", "Store"]


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    seen = set()
    rows, instructions = [], []
    for i, (name, args, doc) in enumerate(SPECS):
        assert name not in seen, name
        seen.add(name)
        sentence = doc[0].lower() + doc[1:]
        inst = f"Write a Python function {name}({args}) that should {sentence}".replace("should return", "returns")
        rows.append({"prompt": f'def {name}({args}):\n    """{doc}"""\n', "style": "def", "name": name})
        cls = CLASSES[i % len(CLASSES)]
        margs = f"self, {args}" if args else "self"
        rows.append({"prompt": f'class {cls}:\n    def {name}({margs}):\n        """{doc}"""\n', "style": "method", "name": name})
        rows.append({"prompt": inst, "style": "instruct", "name": name})
        instructions.append(inst)
    with open(os.path.join(here, "prompts.jsonl"), "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    with open(os.path.join(here, "instructions.txt"), "w") as f:
        f.write("\n".join(instructions) + "\n")
    print(f"{len(rows)} prompts, {len(instructions)} instructions")


if __name__ == "__main__":
    main()
