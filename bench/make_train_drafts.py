"""Write harmless drafts of the default model for the toxicity stand-in's TRAINING and dev splits.

Why: candidate heads held 10-11 of 642 harmless test texts, 10 of them drafts of the default model
(its ad copy above all: "To protect your furry friends from potential harm..." scored 0.99), and
the dev split showed the same (docs/review.md, "Toxicity"). The heads had trained on only 84 such
drafts. These are more, from briefs of their own: news (crime, war, accidents among them), ad copy
(products whose copy reaches for violent idioms: pest control, self-defence, hunting gear) and
articles, written below for this set and used by no other set (not the template, calibration,
evaluation or unseen test drafts of ``bench/make_template_drafts.py`` and
``bench/make_unseen_drafts.py``).

How: as ``bench/make_unseen_drafts.py`` (``draft_rows``: the starter template rendered with the
brief, the default model through the studio's backend, ``generation_config``: ONNX Runtime when
``ONNX_DIR`` names a converted build, else transformers on the packaged GGUF), default sampling
settings, 96 new tokens, seeds 7 and 8 (ad copy also 9 and 10; the other sets used 1-6). Every fifth
brief of each genre goes to the dev file, the rest to the train file, so no brief is in both.
Resumable: briefs already in the output are skipped. ``guard`` then drops every draft that is a
near duplicate (``review.tools.splits``) of a test text, or a dev draft near a train text.

    ONNX_DIR=/path/to/onnx-int8 .venv/bin/python bench/make_train_drafts.py
    .venv/bin/python bench/make_train_drafts.py guard

The drafts were then read for any that is not harmless (none was found, none dropped:
docs/review.md); the committed files are the labelled set, this script says how they were made.
"""

# ruff: noqa: E501 (the briefs below read best one per line)

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "contentstudio.settings")

import django

django.setup()

from django.conf import settings as django_settings  # noqa: E402

from bench.make_template_drafts import draft_rows  # noqa: E402
from bench.make_unseen_drafts import generation_config  # noqa: E402
from generation.backends import load_backend  # noqa: E402
from generation.backends.types import SamplingSettings  # noqa: E402
from generation.defaults import STARTER_TEMPLATES  # noqa: E402

DATA = Path(
    os.environ.get("TRAIN_DRAFTS_DIR")
    or Path(__file__).resolve().parent.parent / "review" / "tools" / "data"
)
OUT = {
    "train": DATA / "toxicity_train_studio_drafts.jsonl",
    "dev": DATA / "toxicity_dev_studio_drafts.jsonl",
}
SEEDS = {"news_report": (7, 8), "ad_copy": (7, 8, 9, 10), "article": (7, 8)}
MAX_NEW_TOKENS = int(os.environ.get("TRAIN_DRAFTS_TOKENS", "96"))

NEWS = [
    (
        "Lorry driver jailed after fatal crash",
        "A lorry driver who was using his phone when he hit a queue of cars, killing two people, was jailed for nine years.",
    ),
    (
        "Gas leak forces school evacuation",
        "Four hundred pupils were led out of a secondary school on Tuesday after a gas leak was found in the kitchen.",
    ),
    (
        "Rebels seize airport in north",
        "Rebel fighters took control of the northern airport on Sunday after two days of clashes with the army.",
    ),
    (
        "Pensioner scammed out of savings",
        "An 81-year-old man lost his life savings to fraudsters who posed as bank staff on the phone.",
    ),
    (
        "Tornado tears through farm towns",
        "A tornado destroyed barns and homes in three farming towns; two people were killed and dozens hurt.",
    ),
    (
        "Police officer shot during traffic stop",
        "An officer was shot in the leg during a routine traffic stop on the ring road; a suspect is in custody.",
    ),
    (
        "Village votes against wind farm",
        "Residents voted 412 to 388 against plans for twelve wind turbines on the hill above the village.",
    ),
    (
        "Crocodile attack at river crossing",
        "A fisherman was injured by a crocodile while crossing the river at dawn, rangers said.",
    ),
    (
        "Ex-minister charged with corruption",
        "A former transport minister was charged with taking bribes in exchange for road contracts.",
    ),
    (
        "Cholera outbreak in refugee camp",
        "Health workers confirmed 200 cases of cholera in a camp housing 60,000 people displaced by the war.",
    ),
    (
        "Teen arrested over knife threats",
        "A 17-year-old was arrested after threatening staff with a knife at a fast-food restaurant.",
    ),
    (
        "Volcano eruption grounds flights",
        "Ash from an erupting volcano closed airspace over the island and grounded hundreds of flights.",
    ),
    (
        "Shipyard wins navy contract",
        "The shipyard won a contract to build four patrol vessels, securing 900 jobs for a decade.",
    ),
    (
        "Car bomb kills judge",
        "A judge was killed when a bomb exploded under his car outside the courthouse on Monday.",
    ),
    (
        "Zoo welcomes baby elephant",
        "The city zoo announced the birth of a female elephant calf, the first in twenty years.",
    ),
    (
        "Mass grave found near front line",
        "Investigators exhumed 40 bodies from a mass grave near the former front line.",
    ),
    (
        "Burglars target rural homes",
        "Police warned farmers to lock outbuildings after a string of burglaries in which tools and quad bikes were taken.",
    ),
    (
        "Flooded tunnel traps commuters",
        "Firefighters rescued thirty commuters from a flooded underpass after a water main burst.",
    ),
    (
        "Prisoner escapes from hospital",
        "A prisoner serving a sentence for armed robbery escaped while being treated at the county hospital.",
    ),
    (
        "Pharmacy chain recalls painkillers",
        "A pharmacy chain recalled a batch of painkillers after tablets were found with the wrong dose.",
    ),
    (
        "Drone strike hits weapons depot",
        "A drone strike destroyed an ammunition depot overnight, setting off explosions for hours.",
    ),
    (
        "Toddler rescued from well",
        "Rescuers pulled a two-year-old boy alive from a disused well after an eleven-hour operation.",
    ),
    (
        "Teachers strike over pay",
        "Teachers in 300 schools walked out for a day, demanding a pay rise in line with inflation.",
    ),
    (
        "Helicopter crash kills four",
        "A medical helicopter crashed in fog on a hillside, killing the pilot, a doctor and two paramedics.",
    ),
    (
        "Gang member convicted of shooting",
        "A jury convicted a 22-year-old gang member of attempted murder over a shooting outside a nightclub.",
    ),
    (
        "Heat kills hundreds of fish",
        "Hundreds of dead fish were found in the lake after water temperatures reached a record high.",
    ),
    (
        "Protest turns violent at summit",
        "Police fired water cannon at protesters who threw bottles and stones outside the summit venue.",
    ),
    (
        "New maternity unit opens",
        "A new maternity unit with twelve delivery rooms opened at the district hospital on Monday.",
    ),
    (
        "Sailor missing after yacht capsizes",
        "A search was under way for a sailor missing after his yacht capsized in a storm off the cape.",
    ),
    (
        "Arsonist jailed for church fire",
        "A man who set fire to a historic church causing millions in damage was jailed for six years.",
    ),
    (
        "Militia attack on village leaves dozens dead",
        "Gunmen attacked a village at night, killing at least 30 people and burning homes, officials said.",
    ),
    (
        "Power station explosion injures workers",
        "An explosion at a coal power station injured eight workers; the cause is being investigated.",
    ),
    (
        "Bear spotted near campsite",
        "Park rangers closed a campsite after a brown bear was seen searching bins near the tents.",
    ),
    (
        "Budget airline cancels flights",
        "A budget airline cancelled 200 flights over the weekend, blaming a shortage of air traffic controllers.",
    ),
    (
        "Doctor struck off for misconduct",
        "A surgeon was struck off the medical register after operating on patients without consent.",
    ),
    (
        "Border guards seize cocaine",
        "Customs officers found 300 kilograms of cocaine hidden in a shipment of bananas.",
    ),
    (
        "Town hall damaged by storm",
        "Strong winds tore part of the roof off the town hall, and council meetings were moved to the library.",
    ),
    (
        "Farmer killed by bull",
        "A 67-year-old farmer died after being attacked by a bull while moving cattle between fields.",
    ),
    (
        "Court bans protest group",
        "A court banned a protest group from blocking roads after weeks of disruption to traffic.",
    ),
    (
        "Rail strike called off",
        "A planned national rail strike was called off after the union accepted a revised offer.",
    ),
    (
        "Missile hits residential block",
        "A missile struck a residential building in the eastern city, killing nine people, rescuers said.",
    ),
    (
        "Vandals wreck playground",
        "Vandals smashed swings and set fire to a slide at a children's playground overnight.",
    ),
    (
        "Measles cases climb",
        "Health officials reported 150 measles cases this year, urging parents to check their children's vaccinations.",
    ),
    (
        "Climber dies on glacier",
        "An experienced climber died after falling into a crevasse on the glacier on Saturday.",
    ),
    (
        "Mayor opens new sports centre",
        "The mayor opened a sports centre with a swimming pool and climbing wall on the old factory site.",
    ),
    (
        "Kidnapped aid workers released",
        "Three aid workers kidnapped two months ago were released unharmed, their charity said.",
    ),
    (
        "Pit bull seized after attack",
        "Police seized a dog after it attacked a postman, leaving him with injuries to his arm.",
    ),
    (
        "Record crowd at marathon",
        "A record 45,000 runners took part in the city marathon on Sunday in cool, dry weather.",
    ),
    (
        "Oil spill threatens coastline",
        "An oil tanker ran aground, spilling crude that is drifting towards protected beaches.",
    ),
    (
        "Officer cleared over fatal chase",
        "An inquiry cleared a police officer of misconduct over a car chase in which a teenage driver died.",
    ),
]
ADS = [
    ("a mole and gopher trap", "lawn owners", "determined"),
    ("a cockroach bait gel", "apartment renters", "confident"),
    ("a wasp nest removal service", "homeowners", "reassuring"),
    ("a hunting rifle scope", "deer hunters", "precise"),
    ("a pepper spray keyring", "students walking home", "protective"),
    ("a Krav Maga class", "city workers", "fierce"),
    ("a boxing glove", "amateur fighters", "punchy"),
    ("a paintball birthday party", "ten-year-olds", "action-packed"),
    ("a zombie-themed fun run", "runners", "spooky"),
    ("a murder mystery dinner", "couples", "intriguing"),
    ("a true-crime podcast", "commuters", "gripping"),
    ("a flea and tick collar", "cat owners", "caring"),
    ("a slug repellent", "vegetable growers", "cheerful"),
    ("an antivirus program", "home computer users", "vigilant"),
    ("a lice treatment shampoo", "parents of school children", "calm"),
    ("a fly swatter", "summer picnickers", "funny"),
    ("a chainsaw", "woodland owners", "rugged"),
    ("a log splitter", "people with wood stoves", "powerful"),
    ("a hedge trimmer", "gardeners", "sharp"),
    ("a chef's knife set", "cooking students", "bold"),
    ("a fishing lure", "sea anglers", "sporty"),
    ("a bow and arrow archery course", "families", "adventurous"),
    ("a fencing club", "teenagers", "elegant"),
    ("a laser tag arena", "birthday groups", "exciting"),
    ("a war strategy board game", "board game fans", "epic"),
    ("a haunted house attraction", "thrill seekers", "terrifying"),
    ("a wrestling night", "local sports fans", "loud"),
    ("a burglar alarm", "shop owners", "serious"),
    ("a smoke detector", "renters", "urgent"),
    ("a carbon monoxide alarm", "elderly homeowners", "caring"),
    ("a mouthwash", "office workers", "fresh"),
    ("a deodorant", "teenage boys", "cheeky"),
    ("an anti-dandruff shampoo", "young men", "confident"),
    ("a weight-loss programme", "new year resolvers", "motivating"),
    ("an energy drink", "gamers", "hyped"),
    ("a hot sauce", "spicy food lovers", "fiery"),
    ("a whisky tasting", "retired professionals", "refined"),
    ("a tattoo studio", "young adults", "edgy"),
    ("a motorbike", "weekend riders", "rebellious"),
    ("a 4x4 pickup truck", "farmers", "tough"),
    ("a rodent-proof bird feeder", "bird watchers", "gentle"),
    ("a weed-killing flame torch", "allotment holders", "practical"),
    ("a drain unblocking service", "restaurants", "fast"),
    ("a stain remover", "parents of toddlers", "upbeat"),
    ("a stress ball", "students during exams", "playful"),
    ("a breakup recovery coach", "single adults", "warm"),
    ("a divorce lawyer", "separating couples", "discreet"),
    ("a debt collection agency", "small businesses", "firm"),
    ("a funeral plan", "over-fifties", "respectful"),
    ("a blood donation drive", "university students", "inspiring"),
    ("a first aid course", "new parents", "reassuring"),
    ("an ambulance-chasing injury lawyer", "accident victims", "direct"),
    ("a dentist's teeth whitening", "brides", "bright"),
    ("an allergy tablet", "hay fever sufferers", "relieved"),
    ("a cough syrup", "families in winter", "soothing"),
    ("a heavy metal concert", "rock fans", "explosive"),
    ("a crime thriller novel", "book club members", "suspenseful"),
    ("a spy museum", "school groups", "mysterious"),
    ("a shooting range", "sport shooters", "disciplined"),
    ("a dog training school", "owners of unruly puppies", "patient"),
]
ARTICLES = [
    ("how wasps build their nests", ""),
    ("the history of the samurai", "Mention swords and battles."),
    ("how to protect a garden from pests", "Practical steps."),
    ("what to do if you are bitten by a dog", "Practical first aid."),
    ("the history of piracy in the Caribbean", ""),
    ("how police use fingerprints", ""),
    ("the causes of the American Civil War", "Keep it neutral."),
    ("how mosquitoes spread malaria", ""),
    ("the life of Winston Churchill", ""),
    ("how to survive a house fire", "Practical steps."),
    ("how sharks hunt", ""),
    ("the history of the guillotine", "Keep it factual."),
    ("why wolves were reintroduced to Yellowstone", ""),
    ("how to handle online harassment", "Practical advice."),
    ("how poisons affect the body", "For a general audience."),
    ("the sinking of the Lusitania", ""),
    ("how bomb disposal teams work", ""),
    ("the history of the Vikings", "Mention raids."),
    ("how to report a crime", "Practical steps."),
    ("how tsunamis form", ""),
    ("the life of Joan of Arc", ""),
    ("how to kill weeds without chemicals", ""),
    ("what causes road rage", ""),
    ("the history of the atomic bomb", "Keep it neutral."),
    ("how predators and prey evolve together", ""),
    ("how hospitals triage patients", ""),
    ("the plague in medieval Europe", ""),
    ("how to keep children safe online", ""),
    ("how forest fires are fought from the air", ""),
    ("the life of Florence Nightingale", ""),
    ("how to talk to a teenager about drugs", ""),
    ("the history of the Colosseum", "Mention gladiators."),
    ("how snake antivenom is made", ""),
    ("how prisons try to reduce reoffending", ""),
    ("the D-Day landings", "Keep it factual."),
    ("how to get rid of rats", "Practical steps."),
    ("how hackers steal passwords", "For a general audience."),
    ("why some people fear spiders", ""),
    ("how the Black Death changed Europe", ""),
    ("how to calm an angry customer", "Practical advice."),
]


def briefs() -> list[tuple[str, str, dict, dict[str, str]]]:
    """(split, content type, template, values) for every brief; every fifth of a genre is dev."""
    found = []
    for template in STARTER_TEMPLATES:
        kind = template["content_type"]
        if kind == "news_report":
            values = [{"headline": h, "lede": lede} for h, lede in NEWS]
        elif kind == "ad_copy":
            values = [{"product": p, "audience": a, "tone": t} for p, a, t in ADS]
        else:
            values = [{"topic": t, "notes": n} for t, n in ARTICLES]
        for i, value in enumerate(values):
            found.append(("dev" if i % 5 == 4 else "train", kind, template, value))
    return found


def generate() -> None:
    import torch

    torch.set_num_threads(int(os.environ.get("THREADS", "1")))
    config = generation_config()
    backend = load_backend(config, cache_root=Path(django_settings.MODEL_CACHE_DIR))
    settings = SamplingSettings(
        max_new_tokens=MAX_NEW_TOKENS, temperature=0.7, top_p=0.9, top_k=50, repetition_penalty=1.1
    )
    done = {
        (json.dumps(row["variables"], sort_keys=True), row["seed"])
        for path in OUT.values()
        if path.is_file()
        for row in map(json.loads, path.read_text(encoding="utf-8").splitlines())
    }

    def missing(brief: tuple) -> tuple[int, ...]:
        key = json.dumps(brief[3], sort_keys=True)
        return tuple(s for s in SEEDS[brief[1]] if (key, s) not in done)

    # Interleave the genres, so a run stopped early still has some of each.
    todo = [b for b in briefs() if missing(b)]
    by_kind: dict[str, list] = {}
    for item in todo:
        by_kind.setdefault(item[1], []).append(item)
    order = [
        item for group in zip(*(iter(v) for v in by_kind.values()), strict=False) for item in group
    ]
    order += [item for item in todo if item not in order]
    written, started = 0, time.monotonic()
    for split, kind, template, values in order:
        seeds = missing((split, kind, template, values))
        rows = draft_rows(backend, settings, template, values, seeds)
        with OUT[split].open("a", encoding="utf-8") as out:
            for row in rows:
                out.write(json.dumps({**row, "split": split}) + "\n")
        written += len(rows)
        print(
            f"{kind} {split}: {written} drafts, {time.monotonic() - started:.0f} s",
            file=sys.stderr,
            flush=True,
        )


def guard() -> None:
    """Drop drafts near a test text (any split) and dev drafts near a train text."""
    from review.tools import splits
    from review.tools.train_toxicity_head import (
        CANDIDATE_TRAIN_FILES,
        TEST_FILES,
        TRAIN_FILES,
        split_texts,
    )

    test = split_texts(TEST_FILES)
    train_other = split_texts(
        [p for p in (*TRAIN_FILES, *CANDIDATE_TRAIN_FILES) if p != OUT["train"]]
    )
    rows = {
        split: [
            json.loads(line)
            for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip()
        ]
        for split, path in OUT.items()
    }
    train_texts = [r["text"] for r in rows["train"]] + train_other
    for split, items in rows.items():
        texts = [r["text"] for r in items]
        drop = {p.left for p in splits.near_duplicates(texts, test)}
        if split == "dev":
            drop |= {p.left for p in splits.near_duplicates(texts, train_texts)}
        kept = [r for i, r in enumerate(items) if i not in drop]
        OUT[split].write_text("".join(json.dumps(r) + "\n" for r in kept), encoding="utf-8")
        print(f"{split}: kept {len(kept)} of {len(items)} ({len(drop)} near duplicates dropped)")


if __name__ == "__main__":
    guard() if sys.argv[1:] == ["guard"] else generate()
