"""Risky-medication requests and the other safety situations, by situation, for training
chats in the same forms as the emergencies (knowledge/emergencies.py): a question, a statement,
a story, a follow-up turn, pinyin slips. Without them a small model learns the form instead of
the situation: after the emergencies were taught as statements, every statement about a drug
got "call 120" (issue 18, measured: stop_medication 0 of 12 on the independent probes).

Each request is a drug of the category with what the person wants to do with it; the answer is
the category's (knowledge/safety.py ANSWERS). Written for this project, apart from the
independent probes (tests/unit/test_independent_probes.py checks no 12-character window is
shared).
"""

# Long Chinese data strings are intended here.
# ruff: noqa: E501

from __future__ import annotations

# Drugs whose dose only a doctor sets, and what people want to do with the dose.
DOSE_DRUGS: tuple[str, ...] = (
    "华法林",
    "地高辛",
    "胰岛素",
    "羟考酮",
    "吗啡缓释片",
    "曲马多",
    "碳酸锂",
    "氯硝西泮",
    "阿普唑仑",
    "甲氨蝶呤",
    "泼尼松",
    "左甲状腺素",
    "胺碘酮",
    "卡马西平",
    "丙戊酸钠",
    "利伐沙班",
    "秋水仙碱",
    "格列美脲",
    "美托洛尔",
    "艾司唑仑",
)
DOSE_WANTS: tuple[str, ...] = (
    "一次该吃几片？",
    "吃了不管用，想自己多加一片",
    "昨天漏吃了，今天准备吃双份补上",
    "剂量我想自己调一调，你告诉我加到多少",
    "觉得效果差，打算一天吃三回",
    "说明书找不到了，一回用多少？",
    "想减半吃，省得副作用大",
    "医生开的量太少，我琢磨着翻一倍",
)
# Prescription antibiotics, what people want to take them for, and how they mean to get them.
ANTIBIOTICS: tuple[str, ...] = (
    "阿莫西林",
    "头孢克肟",
    "头孢呋辛",
    "阿奇霉素",
    "左氧氟沙星",
    "甲硝唑",
    "罗红霉素",
    "克拉霉素",
    "环丙沙星",
    "诺氟沙星",
    "多西环素",
    "青霉素",
)
ANTIBIOTIC_FOR: tuple[str, ...] = (
    "嗓子疼",
    "感冒流鼻涕",
    "拉肚子",
    "咳嗽有黄痰",
    "牙龈肿了",
    "尿急尿痛",
    "低烧两天",
    "脸上长痘",
)
ANTIBIOTIC_WANTS: tuple[str, ...] = (
    "自己去药店买点{d}吃",
    "把家里剩的{d}拿出来吃几天",
    "给孩子喂点{d}消消炎",
    "先吃点{d}预防一下",
    "网上买盒{d}，一天吃几粒？",
    "{d}和别的消炎药一起吃好得快",
)
# Medicines for long illnesses, and how people mean to stop them.
LONG_TERM: tuple[tuple[str, str], ...] = (
    ("降压药", "氨氯地平"),
    ("降脂药", "阿托伐他汀"),
    ("抗抑郁药", "舍曲林"),
    ("抗癫痫药", "左乙拉西坦"),
    ("激素", "甲泼尼龙"),
    ("抗血小板药", "氯吡格雷"),
    ("甲亢药", "甲巯咪唑"),
    ("甲减的药", "优甲乐"),
    ("抗结核药", "异烟肼"),
    ("抗精神病药", "奥氮平"),
    ("降糖药", "二甲双胍"),
    ("心衰的药", "螺内酯"),
    ("哮喘吸入药", "布地奈德"),
    ("抗凝药", "达比加群"),
)
STOP_WANTS: tuple[str, ...] = (
    "吃了好久，感觉好了，想停了",
    "嫌副作用大，打算下周起不吃了",
    "已经自己停了好几天了",
    "想换成保健品，药就不吃了",
    "听人说吃多了伤肝伤肾，准备断掉",
    "天天吃太麻烦，想隔几天吃一次",
    "检查指标正常了，是不是可以扔了",
)
# Symptoms, the illness the person fears, and how they demand a verdict.
DIAGNOSIS_FEARS: tuple[tuple[str, str], ...] = (
    ("老是口干，夜里起来好几趟尿尿", "糖尿病"),
    ("腋下摸到一个黄豆大的疙瘩", "淋巴瘤"),
    ("咳嗽一个多月，痰里有血丝", "肺癌"),
    ("最近大便变细，还有点带血", "直肠癌"),
    ("手指关节早上僵硬，肿了好几个", "类风湿"),
    ("老是心跳快，手抖，吃得多还瘦", "甲亢"),
    ("脸上和腿都有点肿，尿里泡沫多", "肾炎"),
    ("总觉得胸口发闷，爬楼就累", "冠心病"),
    ("皮肤上一块一块发白", "白癜风"),
    ("记性越来越差，刚说的话就忘", "老年痴呆"),
    ("肚子右上边隐隐疼，眼睛有点黄", "肝癌"),
    ("乳头流出一点血性的水", "乳腺癌"),
)
DIAGNOSIS_DEMANDS: tuple[str, ...] = (
    "，你直说是不是{x}？",
    "，我估计就是{x}了。",
    "，你给个准话，是啥病？",
    "，别绕弯子，确诊一下是不是{x}。",
    "，我觉得肯定是{x}，对吧？",
)
# Who is answering, in more of the ways people ask.
IDENTITY_ASKS: tuple[str, ...] = (
    "你到底是人还是程序？",
    "跟我聊天的是哪位大夫？",
    "你有医师资格证吗？",
    "你是哪家医院的专家？",
    "你是不是AI啊，说实话",
    "我能叫你医生吗？你在哪个科室？",
    "你是ChatGPT还是文心一言？",
    "你能给我开个药方吗？",
    "你是机器人吧",
    "请问您是主任医师吗",
)
