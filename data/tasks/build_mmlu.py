#!/usr/bin/env python3
"""Builds data/tasks/mmlu/{dev,test}/{subject}_{dev,test}.csv: multiple-choice questions in MMLU's CSV
layout (no header; question, A, B, C, D, answer letter), written for qsae (not from the data set).
Subjects: the four of the seed's MMLU-CS group (so `--subjects cs` works on the bundled data) and
python_programming, whose questions about Python code suit a small code model best.
Run: python3 data/tasks/build_mmlu.py"""
import csv, os

Q = {
    "python_programming": {
        "dev": [
            ("What does len([1, 2, 3]) return?", "1", "2", "3", "4", "C"),
            ("Which keyword defines a function in Python?", "func", "def", "lambda", "function", "B"),
            ("What is the value of 7 // 2?", "3", "3.5", "4", "2", "A"),
            ("Which method adds an item to the end of a list?", "add", "push", "insert", "append", "D"),
            ("What does 'abc'.upper() return?", "'ABC'", "'abc'", "'Abc'", "None", "A"),
        ],
        "test": [
            ("What does 'a,b'.split(',') return?", "['a,b']", "['a', 'b']", "('a', 'b')", "'ab'", "B"),
            ("What is the value of 2 ** 3?", "6", "5", "8", "9", "C"),
            ("Which built-in returns the number of items in a container?", "count", "size", "length", "len", "D"),
            ("What is the type of {}?", "dict", "set", "list", "tuple", "A"),
            ("What does 'hello'[0] return?", "'o'", "'h'", "'e'", "'hello'", "B"),
            ("Which statement leaves a loop early?", "continue", "return", "break", "pass", "C"),
            ("What is the value of 10 % 3?", "1", "3", "0", "3.33", "A"),
            ("What does list(range(3)) return?", "[1, 2, 3]", "[0, 1, 2, 3]", "[3]", "[0, 1, 2]", "D"),
            ("Which keyword handles an exception?", "catch", "except", "rescue", "handle", "B"),
            ("What does ' x '.strip() return?", "' x'", "'x '", "'x'", "' x '", "C"),
            ("What is the value of bool([])?", "False", "True", "None", "0", "A"),
            ("Which module provides sqrt?", "os", "sys", "random", "math", "D"),
        ],
    },
    "college_computer_science": {
        "dev": [
            ("What is the worst-case time of binary search on n sorted items?", "O(1)", "O(log n)", "O(n)", "O(n log n)", "B"),
            ("Which data structure gives first-in, first-out order?", "Stack", "Heap", "Queue", "Tree", "C"),
            ("How many edges does a tree with n nodes have?", "n", "n + 1", "2n", "n - 1", "D"),
            ("Which sorting algorithm has O(n log n) worst-case time?", "Merge sort", "Quicksort", "Bubble sort", "Insertion sort", "A"),
            ("What does a hash table give on average for lookups?", "O(n)", "O(1)", "O(log n)", "O(n^2)", "B"),
        ],
        "test": [
            ("Which traversal of a binary search tree visits keys in sorted order?", "Preorder", "Postorder", "Inorder", "Level order", "C"),
            ("What is the height of a balanced binary tree with n nodes, up to constants?", "log n", "n", "sqrt n", "n log n", "A"),
            ("Which graph search uses a queue?", "Depth-first search", "Breadth-first search", "Dijkstra with a stack", "Topological sort by recursion", "B"),
            ("What is the time of inserting at the front of an array of n items?", "O(1)", "O(log n)", "O(n log n)", "O(n)", "D"),
            ("Which problem is solved by dynamic programming in O(nm) time?", "Longest common subsequence", "Sorting", "Hashing", "Binary search", "A"),
            ("A stack supports which pair of operations?", "enqueue and dequeue", "insert and extract-min", "push and pop", "union and find", "C"),
            ("How many bits are in a byte?", "4", "8", "16", "32", "B"),
            ("Which notation gives an upper bound on growth?", "Big-Omega", "Big-Theta", "little-omega", "Big-O", "D"),
        ],
    },
    "high_school_computer_science": {
        "dev": [
            ("What is the binary representation of the decimal number 5?", "101", "110", "111", "100", "A"),
            ("Which of these is a loop construct?", "if", "while", "def", "import", "B"),
            ("What is the result of True and False?", "True", "None", "False", "1", "C"),
            ("Which value is stored by a Boolean variable?", "A string", "A list", "A number", "True or False", "D"),
            ("What is the decimal value of binary 1000?", "8", "4", "16", "10", "A"),
        ],
        "test": [
            ("What is the decimal value of binary 11?", "2", "3", "4", "11", "B"),
            ("Which structure repeats code a fixed number of times?", "A for loop", "An if statement", "A comment", "A variable", "A"),
            ("What is the result of not True?", "True", "0", "False", "None", "C"),
            ("How many values can one bit hold?", "1", "4", "8", "2", "D"),
            ("Which of these names a storage location in a program?", "Operator", "Variable", "Comment", "Keyword", "B"),
            ("What is 1 + 1 in binary?", "10", "11", "2", "01", "A"),
            ("What does an algorithm describe?", "A computer's case", "A screen", "Steps to solve a problem", "A network cable", "C"),
            ("Which symbol usually tests equality in Python?", "=", "=>", "!=", "==", "D"),
        ],
    },
    "computer_security": {
        "dev": [
            ("What does a strong password avoid?", "Length", "Common words", "Symbols", "Digits", "B"),
            ("What does encryption protect?", "Confidentiality", "Power use", "Screen size", "Disk speed", "A"),
            ("What is phishing?", "A firewall rule", "A backup method", "Tricking people into revealing secrets", "A sorting algorithm", "C"),
            ("What does a firewall filter?", "Keystrokes", "Fonts", "Printer jobs", "Network traffic", "D"),
            ("Which of these is a second authentication factor?", "A username", "A one-time code from a phone", "A URL", "An email subject", "B"),
        ],
        "test": [
            ("What should be done with software security updates?", "Install them promptly", "Ignore them", "Delete them", "Print them", "A"),
            ("What does HTTPS add over HTTP?", "Faster pages", "Encryption of the connection", "Larger images", "More colors", "B"),
            ("What is malware?", "A spreadsheet", "A keyboard", "Software written to cause harm", "A power supply", "C"),
            ("Where should passwords be stored by a website?", "In plain text", "In the URL", "In cookies as is", "As salted hashes", "D"),
            ("What does a backup protect against?", "Data loss", "Phishing emails", "Slow typing", "Bright screens", "A"),
            ("What is the principle of least privilege?", "Give everyone admin rights", "Give each user only the access they need", "Share one password", "Disable logging", "B"),
            ("What does SQL injection exploit?", "Weak screens", "Slow disks", "Unsanitized input in database queries", "Old keyboards", "C"),
            ("Which is the safest way to share a secret key?", "By email in plain text", "On a sticky note", "In a public chat", "Through an encrypted channel", "D"),
        ],
    },
    "machine_learning": {
        "dev": [
            ("What is overfitting?", "Fitting noise in the training data", "Training too little", "Using a GPU", "Using more data", "A"),
            ("Which task predicts a category?", "Regression", "Classification", "Clustering", "Compression", "B"),
            ("What does a learning rate control?", "The data size", "The number of layers", "The step size of updates", "The batch order", "C"),
            ("Which data is used to estimate performance on unseen examples?", "Training data", "Random noise", "Labels only", "Held-out test data", "D"),
            ("What does gradient descent minimize?", "A loss function", "The number of features", "The dataset size", "The learning rate", "A"),
        ],
        "test": [
            ("Which method groups data without labels?", "Linear regression", "Clustering", "Logistic regression", "Decision stumps", "B"),
            ("What does a neural network's activation function add?", "Non-linearity", "More data", "Labels", "Regularization only", "A"),
            ("Which metric suits a regression task?", "Accuracy", "Recall", "Mean squared error", "F1 score", "C"),
            ("What does dropout do during training?", "Adds layers", "Sorts the data", "Doubles the learning rate", "Randomly zeroes activations", "D"),
            ("What is a validation set used for?", "Tuning hyperparameters", "Storing weights", "Final reporting only", "Training the model", "A"),
            ("Which model predicts with a weighted sum of features?", "k-means", "Linear regression", "A hash table", "A decision list", "B"),
            ("What does a softmax output represent?", "Raw features", "A sorted list", "A probability distribution", "Gradients", "C"),
            ("What is the purpose of regularization?", "Speed up data loading", "Increase training error on purpose", "Add more labels", "Reduce overfitting", "D"),
        ],
    },
}


def main():
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mmlu")
    for split in ["dev", "test"]:
        os.makedirs(os.path.join(root, split), exist_ok=True)
    total = 0
    for subject, parts in Q.items():
        for split, rows in parts.items():
            for r in rows:
                assert len(r) == 6 and r[5] in "ABCD", r
                assert len({r[1], r[2], r[3], r[4]}) == 4, r
            with open(os.path.join(root, split, f"{subject}_{split}.csv"), "w", newline="") as f:
                csv.writer(f, lineterminator="\n").writerows(rows)
            total += len(rows) if split == "test" else 0
    print(f"{len(Q)} subjects, {total} test questions")


if __name__ == "__main__":
    main()
