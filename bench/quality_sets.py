"""Labelled sets for bench/bench_quality.py: news briefs, and drafts of them in which numbers,
names and quotations were changed or invented (the positives) beside restatements of the
brief's own specifics written another way (the negatives).

Built by rule from a seed, so the set is the same on every run. Dev and test use disjoint
sentence frames and disjoint name and place pools; a near-duplicate guard (word 5-shingle
Jaccard) drops a test draft too close to a dev one. This is a purpose-built set, written by
rules, not model drafts: it measures the detector on the kinds of change the issue names.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field

# The 20 briefs of the measurement and ones like them (off-brief rate).
NEWS_BRIEFS = [
    "The central bank raised interest rates by half a percentage point to fight inflation.",
    "Floods forced the evacuation of two villages along the river.",
    "The city council approved a new budget for public libraries.",
    "A fire destroyed a warehouse in the industrial district overnight; no one was hurt.",
    "The national museum reopened after a two-year renovation.",
    "Teachers in the capital went on strike over pay.",
    "A new high-speed rail line between the two largest cities opened on Monday.",
    "The health ministry launched a vaccination campaign against measles in schools.",
    "Heavy snow closed the main mountain pass for three days.",
    "The football club appointed a new head coach after a losing season.",
    "Unemployment fell to its lowest level in a decade, the statistics office said.",
    "A cyberattack disrupted the hospital's appointment system for a week.",
    "The government announced a ban on single-use plastic bags from next year.",
    "Farmers protested against lower milk prices outside parliament.",
    "The airport will build a third runway, the transport minister said.",
    "Scientists discovered a new species of frog in the northern rainforest.",
    "The city will plant ten thousand trees to cool its streets in summer.",
    "A bridge collapsed under a lorry; the driver was rescued by firefighters.",
    "The university raised tuition fees by five percent for international students.",
    "Drought cut the wheat harvest by a third this year.",
]

# Twenty more, written for the top-up measurement (same kinds of story, none tuned on).
MORE_NEWS_BRIEFS = [
    "The regional hospital opened a new maternity ward with forty beds.",
    "Police arrested three men after a jewellery shop robbery in the old town.",
    "The state railway cancelled half of its night trains because of a staff shortage.",
    "A storm cut power to twelve thousand homes on the coast.",
    "The city's first cycle lane network will be finished by the end of the year.",
    "The supreme court struck down a law that limited public protests.",
    "A local bakery won the national bread competition for the second time.",
    "Water prices will rise by eight percent next month, the utility said.",
    "The zoo welcomed two rare snow leopard cubs born in captivity.",
    "Parliament passed a bill that lowers the voting age to sixteen.",
    "A chemical spill closed the motorway near the port for six hours.",
    "The tech company will cut four hundred jobs at its European headquarters.",
    "Voters rejected a plan to build a casino near the lake.",
    "The library will stay open until midnight during the exam season.",
    "An earthquake of magnitude five shook the northern province; no damage was reported.",
    "The ministry of education will give every pupil a free laptop.",
    "Bus drivers accepted a pay deal that ends a month-long strike.",
    "A wildfire forced hundreds of tourists to leave their campsites.",
    "The central bank kept interest rates unchanged for the third month.",
    "The mayor opened a shelter for homeless people in a former school.",
]

# Forty held out (issue 21): written after the top-up prompt (``quality.rebrief``, the key terms
# spelled out) had been chosen on the forty above, and never used to choose or tune anything.
# Other stories, the same style; ``heldout_leaks`` (the project's near-duplicate guard) checks
# them against the forty above. The bench reports them on their own lines (``_heldout``).
HELDOUT_NEWS_BRIEFS = [
    "The port authority opened a container terminal that doubles its capacity.",
    "A landslide blocked the coastal road after a week of heavy rain.",
    "The country's largest carmaker recalled sixty thousand vehicles over faulty brakes.",
    "Nurses at three public hospitals will work to rule from Thursday over staffing levels.",
    "The opposition leader resigned after her party lost the regional election.",
    "A volcano erupted on the island, and flights to the mainland were suspended.",
    "The city banned cars from its historic centre on Sundays.",
    "Archaeologists uncovered a Roman mosaic beneath a car park in the town centre.",
    "The national orchestra cancelled its autumn tour after losing its main sponsor.",
    "Inflation rose to four percent in March, driven by food and energy prices.",
    "A ferry ran aground near the harbour; all ninety passengers were brought ashore.",
    "The supermarket chain will stop selling eggs from caged hens by 2028.",
    "Customs officers seized two tonnes of cocaine hidden in a shipment of bananas.",
    "The women's national team reached the World Cup final for the first time.",
    "The regional government will pay for free school meals for all primary pupils.",
    "A heatwave pushed temperatures above forty degrees in the south for five days.",
    "The telecom regulator fined the largest mobile operator for misleading customers.",
    "The town's only cinema closed its doors after ninety years.",
    "Researchers developed a blood test that detects pancreatic cancer early.",
    "The finance minister presented a budget that cuts income tax for low earners.",
    "A gas explosion damaged an apartment block; four residents were taken to hospital.",
    "Toxic algae closed six beaches on the lake during the holiday weekend.",
    "The minimum wage will rise by six percent in January, the labour minister said.",
    "A court jailed a former mayor for five years for taking bribes.",
    "Two climbers were rescued from a glacier after a night in a snow hole.",
    "The national park will charge visitors an entry fee from the summer.",
    "Taxi drivers blocked the main avenues in protest against ride-hailing apps.",
    "A new bridge across the estuary cut the drive between the two towns by an hour.",
    "The country's first offshore wind farm began supplying electricity to the grid.",
    "Hackers stole the personal data of two million bank customers.",
    "The census showed that the rural population fell by a tenth in ten years.",
    "Inspectors closed a restaurant after forty diners fell ill with food poisoning.",
    "A gallery returned a looted painting to the heirs of its original owner.",
    "Fishing for cod in the bay was banned for two years to protect stocks.",
    "A tram derailed during the morning rush hour; six people were injured.",
    "The electricity company will cut household bills by twelve percent from April.",
    "Thousands of students marched through the capital to demand action on climate change.",
    "The prime minister reshuffled the cabinet and named a new foreign minister.",
    "A shortage of antibiotics left pharmacies unable to fill prescriptions for children.",
    "House prices fell for the sixth month in a row, the land registry said.",
]


# Forty held out again (issue 21, the on-brief-first order): the forty above were read while the
# order was chosen, so they are dev now. Written before anything was run on them, ten kinds of
# story (courts, weather, sport, health, business, local government, science, transport,
# culture, education), each with one to three specifics; ``heldout_leaks`` checks them apart
# from both earlier sets. The bench reports them on their own lines (``_heldout2``).
HELDOUT2_NEWS_BRIEFS = [
    "A judge in Leeds fined a building firm 250,000 pounds after a scaffold fell onto a pavement.",
    "The appeals court cleared two journalists of contempt over their reporting of a murder trial.",
    "A jury convicted a former bank clerk of stealing 1.2 million dollars from elderly customers.",
    "The constitutional court ordered a recount of the votes in three northern districts.",
    "Hailstones the size of golf balls smashed greenhouses across 300 hectares near Almeria.",
    "A tornado tore the roofs off forty houses in a small Oklahoma town on Tuesday night.",
    "Fog grounded every flight at Milan's Linate airport for most of Saturday morning.",
    "The wettest October in seventy years left rivers in Wales above their banks.",
    "Kenyan runner Faith Mutua broke the women's marathon record in Berlin by 40 seconds.",
    "The city's ice hockey team was relegated after losing its final match 5-2.",
    "A cycling team withdrew from the Tour of Flanders after eight of its riders fell ill.",
    "The chess federation suspended a grandmaster for six months for using a phone in a game.",
    "Doctors in Lyon performed the country's first hand transplant on a teenager.",
    "Cases of whooping cough tripled in the first half of the year, the health agency said.",
    "The health service will hire 2,000 more mental health nurses by next spring.",
    "A hospital in Porto apologised after a surgeon operated on the wrong knee.",
    "The airline posted a record profit of 900 million euros on strong summer demand.",
    "A brewery founded in 1842 was sold to a Dutch drinks group.",
    "The steel plant on the river will shut its last blast furnace in September; 800 jobs go.",
    "Shares in the online fashion retailer fell by a quarter after it warned on sales.",
    "The borough council voted to raise parking charges in the town centre by 30 percent.",
    "Residents of Greenfield Road won their fight to keep the village post office open.",
    "The county will repair 500 kilometres of potholed roads before winter, its roads chief said.",
    "The mayor of Lille dropped a plan to merge two primary schools after parents protested.",
    "Astronomers spotted a comet that should be visible to the naked eye in May.",
    "A team at the University of Bergen grew coral in a laboratory tank for the first time.",
    "A drilling ship recovered ice cores two million years old from Antarctica.",
    "Engineers launched a weather satellite that will map rainfall over Africa every hour.",
    "The ferry service between Dover and Calais added four daily crossings for the summer.",
    "A signal failure at Central Station stranded 20,000 commuters for three hours.",
    "Buses in the city will be free for everyone under eighteen from September.",
    "An electric air taxi completed its first passenger flight over the harbour in Oslo.",
    "A lost symphony by a Czech composer was performed for the first time in Prague.",
    "The film festival gave its top prize to a documentary about Mongolian herders.",
    "Thieves stole three medieval manuscripts from a monastery library in the Alps.",
    "The novelist Ana Ribeiro won the national book prize for her third novel.",
    "Exam results showed that maths grades rose for the first time in five years.",
    "The university will close its music department to save four million pounds.",
    "A primary school in Dundee banned mobile phones for pupils during the school day.",
    "Teachers will get 20 extra days of training each year under a new national plan.",
]


# Written before the top-up's steering was measured (the bias was chosen on the dev briefs
# above); run once after the choice.
HELDOUT3_NEWS_BRIEFS = [
    "Divers in Antwerp harbour found an unexploded wartime mine beside a container quay.",
    "A Madrid court ordered a football agent to repay 6 million euros in unpaid tax.",
    "Judges ruled that police may not read text messages on a seized phone without a warrant.",
    "A man was arrested after a fire destroyed a timber warehouse in Gdansk overnight.",
    "An avalanche buried a hut near Bolzano; all eleven hikers inside were rescued.",
    "A heatwave pushed temperatures in Seville to 46 degrees, a record for June.",
    "Drought has left the reservoir that supplies Barcelona at 12 percent of capacity.",
    "An earthquake of magnitude 5.8 shook western Turkey; no deaths were reported.",
    "The national rugby team beat Ireland 24-19 to win the Six Nations title.",
    "Swimmer Lena Kovacs won three gold medals at the European championships in Rome.",
    "The football club sacked its manager after nine games without a win.",
    "Organisers moved the city marathon to October because of the summer heat.",
    "A new vaccine cut malaria cases among young children by half in a trial in Ghana.",
    "The hospital in Tampere opened a ward for patients with long Covid.",
    "Waiting times for cataract surgery fell to eleven weeks, the health ministry said.",
    "A shortage of pharmacists closed 60 chemists across rural Scotland last year.",
    "The carmaker will build a battery factory near Valencia, creating 3,000 jobs.",
    "The central bank of Norway held its main interest rate at 4.5 percent.",
    "A supermarket chain recalled its own-brand peanut butter over salmonella fears.",
    "The shipping company cut 1,200 office jobs after freight prices collapsed.",
    "The town council of Harrogate approved 400 new homes on the old gasworks site.",
    "Residents voted to turn the disused railway line into a cycle path.",
    "The city will plant 10,000 trees along its main roads over the next three years.",
    "A bridge over the Danube in Novi Sad reopened after two years of repairs.",
    "Divers mapped a sunken Bronze Age village in a Swiss lake near Zurich.",
    "Researchers in Zurich built a robot hand that can tie a shoelace.",
    "A probe sent to Jupiter's moon Europa returned its first close images.",
    "Scientists counted 1,400 wolves in the Alps, twice as many as ten years ago.",
    "The night train from Vienna to Paris will run daily from next spring.",
    "A strike by air traffic controllers cancelled 900 flights across France.",
    "The port of Rotterdam handled a record 15 million containers last year.",
    "Trams will return to the streets of Leicester after sixty years.",
    "A painting by Artemisia Gentileschi sold at auction for 4.8 million dollars.",
    "The opera house in Cardiff cancelled its season after the roof began to leak.",
    "A museum in Krakow returned a stolen icon to a church in Ukraine.",
    "The singer Marta Lind cancelled her tour after losing her voice.",
    "The government will cap tuition fees at 9,000 pounds for the next four years.",
    "A secondary school in Galway will teach all lessons in Irish from September.",
    "Thousands of students marched in Lisbon against the rising cost of rent.",
    "The education minister resigned after exam papers leaked online.",
]


def heldout_leaks() -> list[tuple[str, str, str, str, float]]:
    """Near duplicates (word-set or word 3-shingle Jaccard >= 0.4, review.tools.splits) between
    any two of: the forty briefs the top-up was chosen on, the first held-out forty (dev since
    the on-brief-first order was chosen on them), the second (dev since the steering was
    chosen after its look) and the third; empty when they are apart."""
    from review.tools import splits

    return splits.check_apart(
        {
            "tuned": [*NEWS_BRIEFS, *MORE_NEWS_BRIEFS],
            "heldout": HELDOUT_NEWS_BRIEFS,
            "heldout2": HELDOUT2_NEWS_BRIEFS,
            "heldout3": HELDOUT3_NEWS_BRIEFS,
        }
    )


@dataclass
class Item:
    brief: str
    draft: str
    positives: list[tuple[int, int, str]] = field(default_factory=list)  # (start, end, kind)
    split: str = "dev"


DEV_POOL = {
    "first": ["Ana", "Peter", "Grace", "Omar", "Lena", "Victor", "Maria", "Tomas"],
    "last": ["Ruiz", "Hollis", "Okafor", "Brandt", "Moreau", "Sato", "Lindqvist", "Costa"],
    "place": ["Riverton", "Eastford", "Millbrook", "Ashdale", "Northgate"],
    "org": ["Riverton Water Board", "Eastford Rail", "Millbrook Hospital Trust"],
}
TEST_POOL = {
    "first": ["Helen", "David", "Amira", "Jonas", "Priya", "Marco", "Ingrid", "Samuel"],
    "last": ["Whitaker", "Nakamura", "Adeyemi", "Keller", "Duval", "Petrov", "Alvarez", "Quinn"],
    "place": ["Lakeside", "Stonebridge", "Westmoor", "Harrowby", "Fairhaven"],
    "org": ["Lakeside Transit Authority", "Westmoor Energy", "Fairhaven Port Company"],
}
NOUNS = ["homes", "jobs", "students", "beds", "buses", "families", "workers", "schools"]
TITLES = ["Mayor", "Minister", "Director", "Councillor", "Chief Executive"]
QUOTES = [
    "we will not let our residents down",
    "this is the right decision for the city",
    "the numbers speak for themselves",
    "nobody saw this coming",
    "we have waited far too long for this",
    "it is a great day for everyone here",
]

# A frame: the brief, and the draft's restatement of it written another way. Keys: {who}
# (first last), {last}, {title}, {place}, {org}, {amount} / {amount_alt} (the same sum),
# {count} {noun}, {count_word}, {pct}, {day}.
DEV_FRAMES = [
    (
        '{title} {who} said on {day}: "{quote}." {place} will hire {count} {noun}.',
        '"{Quote}," {last} said, adding that {place} would hire {count_word} {noun}.',
    ),
    (
        "{title} {who} said {place} will spend {amount} on {count} new {noun} by {day}.",
        "{place} will spend {amount_alt} on {count_word} new {noun}, {last} said on {day}.",
    ),
    (
        "The {org} cut prices by {pct} percent on {day}, its director {who} said.",
        "On {day} the {org} lowered its prices by {pct}%, according to {who}.",
    ),
    (
        "{place} council approved {amount} for {count} {noun}, {title} {who} announced.",
        "Councillors in {place} approved {amount_alt} for {count} {noun}, {last} announced.",
    ),
]
TEST_FRAMES = [
    (
        'The {org} will close {count} {noun}, {who} said: "{quote}."',
        '"{Quote}," said {who} of the {org}, which is closing {count_word} {noun}.',
    ),
    (
        "The {org} will hire {count} {noun} with a budget of {amount}, {who} said on {day}.",
        "With {amount_alt} to spend, the {org} plans to take on {count_word} {noun}, {last} said.",
    ),
    (
        "In {place}, prices rose {pct} percent last month, {title} {who} said on {day}.",
        "Prices in {place} went up by {pct}% last month, {who} said.",
    ),
    (
        "{title} {who} opened {count} {noun} in {place} costing {amount} on {day}.",
        "On {day}, {count_word} {noun} costing {amount_alt} were opened in {place} by {last}.",
    ),
]
# The third split, "fresh", was written after the test split's false positives had been read
# (docs/generation.md reported them), before any rule ran on it: its figures are the ones
# reported. Its pools include surnames ending in "s" and surnames that are also words.
FRESH_POOL = {
    "first": ["Rosa", "Kwame", "Elif", "Declan", "Mei", "Tobias", "Nadia", "Oscar"],
    "last": ["Jennings", "Okoro", "Lindgren", "Fletcher", "Castillo", "Brennan", "Haddad", "Marsh"],
    "place": ["Oakhurst", "Bramley", "Kingsport", "Greyford", "Silverdale"],
    "org": ["Oakhurst Housing Trust", "Kingsport Ferries", "Greyford District Council"],
}
FRESH_FRAMES = [
    (
        "{who}, head of the {org}, said on {day} that {count} {noun} would be added.",
        "The {org} will add {count_word} {noun}, its head {who} said on {day}.",
    ),
    (
        '{place} will borrow {amount} to repair {count} {noun}, {title} {who} said: "{quote}."',
        '"{Quote}," {who} said of the plan to borrow {amount_alt} for {count_word} {noun}.',
    ),
    (
        "Fares at the {org} will rise {pct} percent from {day}, {who} announced.",
        "From {day}, {org} fares go up by {pct}%, {last} announced.",
    ),
    (
        "{title} {who} said {place} had set aside {amount} for {count} {noun} on {day}.",
        "{place} has set aside {amount_alt} for {count_word} {noun}, according to {title} {who}.",
    ),
]
# Sentences with no specific of their own (negatives): subjects that open a sentence.
GENERIC = {
    "dev": ["Officials", "Residents", "Critics", "Police"],
    "test": ["Analysts", "Witnesses", "Shopkeepers", "Commuters", "Nurses"],
    "fresh": ["Paramedics", "Pensioners", "Tenants", "Regulators", "Landlords", "Volunteers"],
}
NUMBER_WORDS = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight"}
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"]


def _values(rng: random.Random, pool: dict[str, list[str]]) -> dict[str, str]:
    first, last = rng.choice(pool["first"]), rng.choice(pool["last"])
    millions = rng.choice([1.5, 2.4, 4.2, 7.8, 12.5, 36.0])
    count = rng.choice(list(NUMBER_WORDS))
    return {
        "who": f"{first} {last}",
        "last": last,
        "title": rng.choice(TITLES),
        "place": rng.choice(pool["place"]),
        "org": rng.choice(pool["org"]),
        "amount": f"${millions:g} million",
        "amount_alt": f"{millions * 1e6:,.0f} dollars",
        "millions": f"{millions:g}",
        "count": str(count),
        "count_word": NUMBER_WORDS[count],
        "noun": rng.choice(NOUNS),
        "pct": str(rng.choice([2, 3, 4, 6, 8])),
        "day": rng.choice(DAYS),
        "quote": (quote := rng.choice(QUOTES)),
        "Quote": quote.capitalize(),
    }


def _append(draft: str, sentence: str, marks: list[tuple[str, str]], item: Item) -> str:
    """Append ``sentence``; each (text, kind) of ``marks`` inside it is a labelled positive."""
    start = len(draft) + 1
    for text, kind in marks:
        at = sentence.index(text)
        item.positives.append((start + at, start + at + len(text), kind))
    return f"{draft} {sentence}"


def _change_number(draft: str, v: dict[str, str], rng: random.Random, item: Item) -> str:
    """Replace the brief's figure in the restatement by another value (a contradiction)."""
    old = v["amount_alt"]
    if old not in draft:
        return draft
    new_millions = float(v["millions"]) + rng.choice([3.0, 9.3, 11.0])
    new = f"{new_millions * 1e6:,.0f} dollars"
    at = draft.index(old)
    draft = draft[:at] + new + draft[at + len(old) :]
    item.positives.append((at, at + len(new), "number"))
    return draft


def _change_name(draft: str, v: dict[str, str], pool: dict[str, list[str]], rng, item) -> str:
    """Replace the brief's person (by surname) with another surname."""
    others = [n for n in pool["last"] if n != v["last"]]
    new = rng.choice(others)
    m = re.search(rf"\b{re.escape(v['last'])}\b", draft)
    if not m:
        return draft
    draft = draft[: m.start()] + new + draft[m.end() :]
    item.positives.append((m.start(), m.start() + len(new), "name"))
    return draft


def build(n_per_split: int = 120, seed: int = 21) -> list[Item]:
    rng = random.Random(seed)
    items: list[Item] = []
    for split, frames, pool in (
        ("dev", DEV_FRAMES, DEV_POOL),
        ("test", TEST_FRAMES, TEST_POOL),
        ("fresh", FRESH_FRAMES, FRESH_POOL),
    ):
        for i in range(n_per_split):
            brief_frame, draft_frame = frames[i % len(frames)]
            v = _values(rng, pool)
            item = Item(brief=brief_frame.format(**v), draft="", split=split)
            draft = draft_frame.format(**v)
            item.draft = draft
            # Negatives kept as they are: the restatement (another way of writing the brief's
            # sum, count and people). Then 0-3 changes, each a labelled positive.
            kinds = rng.sample(
                ["number", "change_number", "name", "change_name", "quote", "surname", "date"],
                k=rng.choice([0, 1, 2, 3]),
            )
            if rng.random() < 0.5:
                kinds.append("generic")
            # In-place changes first: appended sentences keep their offsets.
            kinds.sort(key=lambda k: not k.startswith("change_"))
            for kind in kinds:
                if kind == "change_number":
                    draft = _change_number(draft, v, rng, item)
                elif kind == "change_name":
                    draft = _change_name(draft, v, pool, rng, item)
                elif kind == "number":
                    count = rng.choice([14, 27, 350, 1200, 46])
                    noun = rng.choice(NOUNS)
                    draft = _append(
                        draft, f"About {count} {noun} are affected.", [(str(count), "number")], item
                    )
                elif kind == "name":
                    other = [f for f in pool["first"] if f not in v["who"]]
                    person = f"{rng.choice(TITLES)} {rng.choice(other)} {rng.choice(pool['last'])}"
                    draft = _append(
                        draft,
                        f"The plan was backed by {person} last week.",
                        [(person, "name")],
                        item,
                    )
                elif kind == "generic":
                    who = rng.choice(GENERIC[split])
                    draft = _append(draft, f"{who} said the change was overdue.", [], item)
                elif kind == "surname":
                    # A lone surname opening a sentence, before a verb of saying or acting.
                    other = rng.choice([n for n in pool["last"] if n != v["last"]])
                    draft = _append(draft, f"{other} criticised the plan.", [(other, "name")], item)
                elif kind == "date":
                    day = rng.choice([d for d in DAYS if d != v["day"]])
                    draft = _append(draft, f"A vote follows on {day}.", [(day, "date")], item)
                elif kind == "quote":
                    fresh = [q for q in QUOTES if q != v["quote"]]
                    quote = f'"{rng.choice(fresh).capitalize()},"'
                    draft = _append(draft, f"{quote} {v['last']} added.", [(quote, "quote")], item)
            item.draft = draft
            items.append(item)
    return items


def shingles(text: str, n: int = 5) -> set[tuple[str, ...]]:
    words = re.findall(r"\w+", text.lower())
    return {tuple(words[i : i + n]) for i in range(max(0, len(words) - n + 1))}


def near_duplicate_guard(items: list[Item], limit: float = 0.5) -> tuple[list[Item], int]:
    """Drop test and fresh items whose draft shares a word 5-shingle Jaccard >= ``limit`` with
    a dev one (fresh ones: with a dev or test one)."""
    dev = [shingles(i.draft) for i in items if i.split == "dev"]
    test = [shingles(i.draft) for i in items if i.split == "test"]
    kept, dropped = [], 0
    for item in items:
        if item.split in ("test", "fresh"):
            mine = shingles(item.draft)
            against = dev if item.split == "test" else dev + test
            if any(mine and len(mine & d) / len(mine | d) >= limit for d in against):
                dropped += 1
                continue
        kept.append(item)
    return kept, dropped
