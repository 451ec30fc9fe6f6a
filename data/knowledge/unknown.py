"""Conditions the knowledge table does not cover, written for this project.

The default data teaches the model one honest behaviour for them: say that it has no reliable
information about the named condition and send the patient to a doctor, instead of answering
with whatever condition it knows that sounds similar. The unseen-topic evaluation set asks about
other conditions (held out of the table's training data), so this behaviour is measured on
names the model never saw.
"""

from __future__ import annotations

UNKNOWN_CONDITIONS: tuple[str, ...] = (
    "结节病", "重症肌无力", "系统性红斑狼疮", "强直性脊柱炎", "干燥综合征", "多发性硬化",
    "帕金森病", "癫痫", "白癜风", "银屑病", "克罗恩病", "溃疡性结肠炎", "肾病综合征",
    "甲状腺结节", "桥本甲状腺炎", "肺结节", "慢阻肺", "支气管扩张", "心房颤动", "心肌炎",
    "青光眼", "白内障", "突发性耳聋", "梅尼埃病", "三叉神经痛", "多囊卵巢综合征",
    "子宫肌瘤", "盆腔炎", "股骨头坏死", "骨质疏松",
    "肺炎", "肺结核", "肺气肿", "肺癌", "胃癌", "肝癌", "结肠癌", "乳腺癌", "宫颈癌", "食管癌",
    "鼻咽癌", "甲状腺癌", "淋巴瘤", "白血病", "黑色素瘤", "冠心病", "心绞痛", "心肌梗死", "心力衰竭",  # noqa: E501
    "脑梗", "脑出血", "乙肝", "肝硬化", "胰腺炎", "胆囊炎", "肾炎", "肾衰竭", "尿毒症", "艾滋病",
    "梅毒", "胃溃疡", "十二指肠溃疡", "肠易激综合征", "类风湿关节炎", "甲减", "骨折", "坐骨神经痛",
    "龋齿", "智齿冠周炎", "近视", "霰粒肿", "角膜炎", "腮腺炎", "麻疹", "风疹", "猩红热", "百日咳",
    "川崎病", "过敏性紫癜", "阿尔茨海默病", "精神分裂症", "双相情感障碍", "产后抑郁", "宫外孕",
    "先兆流产", "妊娠糖尿病", "子宫内膜异位症", "卵巢囊肿", "宫颈炎", "前列腺癌", "膀胱炎", "肾盂肾炎",  # noqa: E501
    "肛裂", "肛瘘", "脂溢性皮炎", "接触性皮炎", "体癣", "股癣", "灰指甲", "疥疮", "扁平疣", "寻常疣",  # noqa: E501
    "鸡眼", "冻疮", "中暑", "食物中毒", "低血糖", "低血压", "早搏", "静脉曲张", "高尿酸血症",
    "网球肘", "腕管综合征", "颞下颌关节紊乱", "鼻息肉", "声带小结", "腺样体肥大", "外耳道炎",
    "口角炎", "牙龈炎", "甲状腺功能减退", "脑卒中", "心律失常", "乳腺结节",
)

# No condition name in the answer: a small model cannot copy a name it never saw, and when it
# tried (an earlier version of this template repeated the name) it named a different condition.
CAUTIOUS = (
    "您问的这种疾病，我这里没有足够可靠的资料，不能给出具体的诊断、用药或处理建议。"
    "它需要医生当面检查后判断，请到正规医院相应科室就诊，不要自行用药。"
)
