#!/usr/bin/env python3
"""Builds data/tasks/gsm8k/{train,test}.jsonl: grade-school word problems in GSM8K's format, written
for qsae (not from the data set). Each answer is step-by-step reasoning with <<calculator>>
annotations, ending in "#### N". Short one- and two-step problems so that a small model has a chance.
Run: python3 data/tasks/build_gsm8k.py  (checks every annotation and final answer)."""
import json, os, re

# (question, [(expression, words before, words after)], final): steps render as "<before> expr = <<expr=v>>v<after>."
TRAIN = [
    ("Ana has 4 red pens and 3 blue pens. How many pens does she have?", [("4+3", "Ana has", " pens")]),
    ("A box holds 6 eggs. How many eggs are in 5 boxes?", [("6*5", "5 boxes hold", " eggs")]),
    ("Leo had 20 stickers and gave 8 to his sister. How many stickers does he have left?", [("20-8", "Leo has", " stickers left")]),
    ("A pizza is cut into 8 slices. Four friends share 2 pizzas equally. How many slices does each friend get?",
     [("8*2", "There are", " slices"), ("16/4", "Each friend gets", " slices")]),
    ("Mia reads 12 pages a day. How many pages does she read in a week?", [("12*7", "In 7 days she reads", " pages")]),
    ("A shirt costs $15 and a hat costs $9. How much do 2 shirts and 1 hat cost?",
     [("15*2", "Two shirts cost $", ""), ("30+9", "With the hat the total is $", "")]),
    ("There are 30 students and 5 tables. How many students sit at each table if they are shared equally?",
     [("30/5", "Each table has", " students")]),
    ("Sam saves $10 each week. He already has $25. How much will he have after 3 weeks?",
     [("10*3", "In 3 weeks he saves $", ""), ("25+30", "He will have $", "")]),
    ("A train travels 60 miles each hour. How far does it travel in 4 hours?", [("60*4", "It travels", " miles")]),
    ("Nora bought 3 packs of 10 cards and lost 7 cards. How many cards does she have now?",
     [("3*10", "She bought", " cards"), ("30-7", "She has", " cards now")]),
]

TEST = [
    ("Tom has 5 apples and buys 3 more. How many apples does Tom have?", [("5+3", "Tom has", " apples")]),
    ("A bag has 12 candies. Lily eats 4 of them. How many candies are left?", [("12-4", "There are", " candies left")]),
    ("Each car has 4 wheels. How many wheels do 6 cars have?", [("4*6", "Six cars have", " wheels")]),
    ("Jake has 18 marbles and shares them equally with 2 friends and himself. How many marbles does each get?",
     [("18/3", "Each of the 3 gets", " marbles")]),
    ("A book costs $7. How much do 3 books cost?", [("7*3", "Three books cost $", "")]),
    ("Emma ran 2 miles on Monday and 5 miles on Tuesday. How many miles did she run?", [("2+5", "She ran", " miles")]),
    ("A class has 24 students. 10 are boys. How many are girls?", [("24-10", "There are", " girls")]),
    ("There are 9 birds on a tree and 6 more land on it. How many birds are on the tree?", [("9+6", "There are", " birds")]),
    ("A farmer has 40 eggs and packs them in cartons of 10. How many cartons does he fill?", [("40/10", "He fills", " cartons")]),
    ("Ben earns $8 an hour. How much does he earn in 5 hours?", [("8*5", "He earns $", "")]),
    ("A garden has 3 rows of 7 plants. How many plants are there?", [("3*7", "There are", " plants")]),
    ("Zoe had $50 and spent $18 on a game. How much money does she have left?", [("50-18", "She has $", " left")]),
    ("A bus carries 45 people. At a stop 12 people get off. How many people are on the bus?", [("45-12", "There are", " people on the bus")]),
    ("A pack has 6 juice boxes. How many juice boxes are in 4 packs?", [("6*4", "Four packs have", " juice boxes")]),
    ("Max has 15 toy cars and gets 9 more for his birthday. How many toy cars does he have?", [("15+9", "He has", " toy cars")]),
    ("Four friends split a bill of $48 equally. How much does each pay?", [("48/4", "Each pays $", "")]),
    ("A baker makes 36 cookies and sells 20. How many cookies are left?", [("36-20", "There are", " cookies left")]),
    ("A spider has 8 legs. How many legs do 5 spiders have?", [("8*5", "Five spiders have", " legs")]),
    ("Kim read 14 pages in the morning and 11 pages in the evening. How many pages did she read?", [("14+11", "She read", " pages")]),
    ("A rope is 30 meters long and is cut into 6 equal pieces. How long is each piece?", [("30/6", "Each piece is", " meters long")]),
    ("Ella buys 2 notebooks for $3 each and a pen for $2. How much does she spend?",
     [("2*3", "The notebooks cost $", ""), ("6+2", "She spends $", "")]),
    ("A shop had 50 hats. It sold 12 on Monday and 15 on Tuesday. How many hats are left?",
     [("12+15", "It sold", " hats"), ("50-27", "There are", " hats left")]),
    ("Tim has 3 boxes with 8 crayons each. He gives away 5 crayons. How many crayons does he have?",
     [("3*8", "He had", " crayons"), ("24-5", "He has", " crayons")]),
    ("A movie ticket costs $9. How much do tickets for a family of 4 cost with $6 of popcorn?",
     [("9*4", "The tickets cost $", ""), ("36+6", "The total is $", "")]),
    ("Ava walks 3 miles every day. How many miles does she walk in 2 weeks?",
     [("7*2", "Two weeks have", " days"), ("3*14", "She walks", " miles")]),
    ("There are 5 plates with 4 cookies each. Dan eats 3 cookies. How many cookies are left?",
     [("5*4", "There were", " cookies"), ("20-3", "There are", " cookies left")]),
    ("A car uses 1 liter of fuel every 12 kilometers. How many liters does it use for 96 kilometers?",
     [("96/12", "It uses", " liters")]),
    ("Olivia has 100 beads. She uses 35 for a necklace and 25 for a bracelet. How many beads are left?",
     [("35+25", "She uses", " beads"), ("100-60", "There are", " beads left")]),
    ("A teacher has 7 boxes of 12 pencils and gives out 50. How many pencils remain?",
     [("7*12", "She had", " pencils"), ("84-50", "There are", " pencils left")]),
    ("Paul scored 12 points in each of 3 games and 9 points in a fourth. How many points did he score in all?",
     [("12*3", "The first three games give", " points"), ("36+9", "In all he scored", " points")]),
]


def render(q, steps):
    lines, val = [], None
    for expr, before, after in steps:
        val = eval(expr)
        v = int(val) if float(val).is_integer() else val
        lines.append(f"{before} {expr} = <<{expr}={v}>>{v}{after}.")
        val = v
    return {"question": q, "answer": "\n".join(lines) + f"\n#### {val}"}


def main():
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gsm8k")
    os.makedirs(out, exist_ok=True)
    for name, items in [("train", TRAIN), ("test", TEST)]:
        rows = [render(q, s) for q, s in items]
        for r in rows:
            for expr, v in re.findall(r"<<([^=]+)=([^>]+)>>", r["answer"]):
                assert abs(eval(expr) - float(v)) < 1e-9, (expr, v)
        with open(os.path.join(out, f"{name}.jsonl"), "w") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")
        print(f"{name}: {len(rows)} problems")


if __name__ == "__main__":
    main()
